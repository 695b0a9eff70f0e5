"""API keys (DETECTOR_API_KEYS, service/api_keys.py) on every inference route: /detect,
/detect/batch, /v2/models/{name}/infer and the DeepStack routes refuse a missing or wrong key
with a 401 in each route's own error shape and accept `Authorization: Bearer`, `X-API-Key`
and (DeepStack) the `api_key` form field; health, /metrics and /models stay open; refusals are
counted; keys never reach the log; a keys file is re-read on SIGHUP. The keys as a comma list
in-process, as a file in a real server process; then the parsing and matching units."""

from __future__ import annotations

import base64
import hmac
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.datastructures import Headers

from bench.attacks.images import jpeg
from bench.attacks.server import Server, ready_server
from service import api_keys
from service.api_keys import ApiKeys, key_from_headers, read_keys
from service.errors import UnauthorizedError
from service.metrics import Metrics
from tests import wait_until
from tests.service.test_metrics import scrape, value

MODEL = "fcos-tiny"
KEY_A = "alpha-key-0123456789abcdef"
KEY_B = "bravo-key-0123456789abcdef"
KEY_C = "charlie-key-0123456789abcd"  # rotated in by SIGHUP
WRONG = "wrong-key-0123456789abcdef"
SECRETS = (KEY_A, KEY_B, KEY_C, WRONG)
KEYS_FILE = f"# inference keys\n\n{KEY_A}\n   # rotated monthly\n  {KEY_B}  \n\n"
IMAGE = jpeg(96, 64)


def _v2_body() -> dict[str, Any]:
    data = [base64.b64encode(IMAGE).decode()]
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": data}]}


# route label -> request kwargs for `post` with these headers and DeepStack `api_key` field
ROUTES: dict[str, Callable[[dict[str, str], str | None], dict[str, Any]]] = {
    "detect": lambda h, _: {"url": "/detect", "content": IMAGE,
                            "headers": {"content-type": "image/jpeg", **h}},
    "batch": lambda h, _: {"url": "/detect/batch", "files": [("image", IMAGE)], "headers": h},
    "v2": lambda h, _: {"url": f"/v2/models/{MODEL}/infer", "json": _v2_body(), "headers": h},
    "deepstack": lambda h, form: {"url": "/v1/vision/detection", "files": {"image": IMAGE},
                                  "data": {} if form is None else {"api_key": form},
                                  "headers": h},
}  # fmt: skip


def assert_refused(route: str, r: Any) -> None:
    """A 401 in the route's own error shape."""
    assert r.status_code == 401, (route, r.text)
    assert r.headers["www-authenticate"] == "Bearer"
    body = r.json()
    if route in ("detect", "batch"):
        assert body["error"]["code"] == "unauthorized"
    elif route == "v2":
        assert isinstance(body["error"], str) and "API key" in body["error"]
    else:
        assert body["success"] is False and body["code"] == 401 and "API key" in body["error"]


def check_every_route(client: Any) -> None:
    """The key matrix on every inference route (`client`: a TestClient or an httpx.Client);
    also checks the refusal counters and that no refused request reached the model."""
    before = scrape(client)
    refused = {route: {"missing": 0, "wrong": 0} for route in ROUTES}
    for route, build in ROUTES.items():
        for headers, form, reason in (
            ({}, None, "missing"),
            ({"X-API-Key": WRONG}, None, "wrong"),
            ({"Authorization": f"Bearer {WRONG}"}, None, "wrong"),
            ({"Authorization": f"Basic {KEY_A}"}, None, "missing"),  # not a scheme we take
            ({"Authorization": f"Bearer {KEY_A}"}, None, None),
            ({"authorization": f"bearer   {KEY_B}"}, None, None),
            ({"X-API-Key": KEY_B}, None, None),
        ):  # fmt: skip
            r = client.post(**build(headers, form))
            if reason is None:
                assert r.status_code == 200, (route, headers, r.text)
            else:
                assert_refused(route, r)
                refused[route][reason] += 1
    deepstack = ROUTES["deepstack"]
    for form, reason in ((KEY_A, None), (f" {KEY_B} ", None), (WRONG, "wrong"), ("", "missing")):
        r = client.post(**deepstack({}, form))
        if reason is None:
            assert r.status_code == 200 and r.json()["success"] is True, r.text
        else:
            assert_refused("deepstack", r)
            refused["deepstack"][reason] += 1
    # a key in a header wins over the form field (DeepStack clients send `api_key` = "" anyway)
    assert client.post(**deepstack({"X-API-Key": KEY_A}, "")).status_code == 200
    after = scrape(client)
    for route, reasons in refused.items():
        for reason, n in reasons.items():
            labels = {"route": route, "reason": reason}
            counted = (value(after, "detector_api_key_refusals_total", **labels)
                       - value(before, "detector_api_key_refusals_total", **labels))  # fmt: skip
            assert counted == n, (labels, counted, n)
        # the others check the key before the model; DeepStack's key is in the body
        outcome = {"model": MODEL if route == "deepstack" else "", "route": route,
                   "outcome": "unauthorized"}  # fmt: skip
        counted = (value(after, "detector_requests_total", **outcome)
                   - value(before, "detector_requests_total", **outcome))  # fmt: skip
        assert counted == sum(reasons.values()), (outcome, counted)
    # only the accepted requests ran the model: 3 per route and 3 more on DeepStack
    images = (value(after, "detector_detections_per_image_count", model=MODEL)
              - value(before, "detector_detections_per_image_count", model=MODEL))  # fmt: skip
    assert images == 3 * len(ROUTES) + 3


def check_open_routes(client: Any) -> None:
    for path in ("/health/live", "/health/ready", "/metrics", "/models", f"/models/{MODEL}",
                 "/v2/health/ready"):  # fmt: skip
        assert client.get(path).status_code == 200, path


# --- the keys as a comma list, in-process ---------------------------------------------------


def test_comma_list_on_every_route(serve: Any) -> None:
    with serve(api_keys=f" {KEY_A}, {KEY_B} ,") as (_, c):
        check_open_routes(c)
        check_every_route(c)


def test_keys_off_by_default(client: Any) -> None:
    for route, build in ROUTES.items():
        assert client.post(**build({}, None)).status_code == 200, route
    samples = scrape(client)["detector_api_key_refusals"].samples
    assert sum(s.value for s in samples if s.name.endswith("_total")) == 0


# --- the keys as a file, in a real server process -----------------------------------------


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "api-keys.txt"
    path.write_text(KEYS_FILE)
    return path


@pytest.fixture(scope="module")
def server(
    tiny_onnx_path: Path, key_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    model = Path(shutil.copy(tiny_onnx_path, tmp_path_factory.mktemp("m") / f"{MODEL}.onnx"))
    with ready_server(tmp_path_factory.mktemp("srv"), model, DETECTOR_API_KEYS=str(key_file),
                      DETECTOR_LOG_LEVEL="debug") as srv:  # fmt: skip
        yield srv


def test_keys_file_on_every_route(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        check_open_routes(c)
        check_every_route(c)


def test_deepstack_python_client_sends_its_key(server: Server) -> None:
    core = pytest.importorskip("deepstack.core", reason="pip install deepstack-python")
    keyed = core.DeepstackObject(ip="127.0.0.1", port=server.port, api_key=KEY_A,
                                 min_confidence=0.0, custom_model=MODEL)  # fmt: skip
    assert len(keyed.detect(IMAGE)) > 0
    for anonymous in (core.DeepstackObject(ip="127.0.0.1", port=server.port),
                      core.DeepstackObject(ip="127.0.0.1", port=server.port, api_key=WRONG)):
        with pytest.raises(core.DeepstackException, match="status code: 401"):
            anonymous.detect(IMAGE)


def test_sighup_rereads_the_keys_file(server: Server, key_file: Path) -> None:
    def status(key: str) -> int:
        return httpx.post(server.url + "/detect", content=IMAGE, timeout=30,
                          headers={"X-API-Key": key}).status_code  # fmt: skip

    assert (status(KEY_A), status(KEY_C)) == (200, 401)
    try:
        key_file.write_text(f"{KEY_C}\n")  # rotated: KEY_C in, KEY_A and KEY_B out
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: status(KEY_C) == 200, 30, 0.05, what="the new key never worked")
        assert (status(KEY_A), status(KEY_B)) == (401, 401)
        key_file.write_text("# nothing left\n")  # an unusable file: the keys in use stay
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: any("API keys not re-read" in r.get("message", "")
                               for r in server.log_records()), 30, 0.05)  # fmt: skip
        assert (status(KEY_C), status(KEY_A)) == (200, 401)
    finally:
        key_file.write_text(KEYS_FILE)
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: status(KEY_A) == 200, 30, 0.05, what="keys file not restored")


def test_keys_never_reach_the_log(server: Server) -> None:
    """Runs after the tests above (same server): every key sent, good or wrong, in every form,
    at DEBUG level; none is in the log."""
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for key in SECRETS:
            c.post("/detect", content=IMAGE, headers={"X-API-Key": key})
            c.post("/v1/vision/detection", files={"image": IMAGE}, data={"api_key": key})
            c.post("/detect/batch", files=[("image", IMAGE)],
                   headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    text = server.log_path.read_text()
    records = server.log_records()
    assert any(r.get("path") == "/v1/vision/detection" for r in records)  # the access log ran
    for key in SECRETS:
        assert key not in text


# --- units: service/api_keys.py ------------------------------------------------------------


def test_keys_file_with_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(KEYS_FILE)
    assert read_keys(path) == [KEY_A, KEY_B]
    keys = ApiKeys.from_setting(SecretStr(str(path)))
    assert keys is not None and keys.path == path
    assert keys.matches(KEY_A) and keys.matches(KEY_B)
    assert not keys.matches("# inference keys") and not keys.matches("")


def test_comma_list(tmp_path: Path) -> None:
    keys = ApiKeys.from_setting(SecretStr(f" {KEY_A} ,{KEY_B},, "))
    assert keys is not None and keys.path is None
    assert keys.matches(KEY_A) and keys.matches(KEY_B) and not keys.matches(WRONG)
    single = ApiKeys.from_setting(SecretStr(KEY_C))
    assert single is not None and single.matches(KEY_C) and not single.matches(KEY_A)
    slashed = ApiKeys.from_setting(SecretStr("a/b+c=key-0123456789,"))  # a key with '/'
    assert slashed is not None and slashed.path is None and slashed.matches("a/b+c=key-0123456789")
    assert ApiKeys.from_setting(None) is None
    with pytest.raises(ValueError, match="no key"):
        ApiKeys.from_setting(SecretStr(" , ,"))
    empty = tmp_path / "empty"
    empty.write_text("# none yet\n\n")
    with pytest.raises(ValueError, match="no key"):
        ApiKeys.from_setting(SecretStr(str(empty)))


def test_a_missing_keys_file_is_an_error_that_does_not_echo_the_value(tmp_path: Path) -> None:
    for setting in (str(tmp_path / "nope.txt"), "looks/like-a-key-0123456789", str(tmp_path)):
        with pytest.raises(ValueError, match="no readable keys file") as err:
            ApiKeys.from_setting(SecretStr(setting))
        assert setting not in str(err.value)


def test_short_keys_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="service.api_keys"):
        ApiKeys(["zq9x", KEY_A])
    assert "1 API key(s) shorter than 16" in caplog.text and "zq9x" not in caplog.text


def test_matching_compares_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Functionally right (each key, no prefix or extension of one, no other) and no early
    exit: as many digest comparisons whichever key matches, or none."""
    keys = ApiKeys([KEY_A, KEY_B, KEY_C])
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(api_keys.hmac, "compare_digest", counting)
    for given, expected in ((KEY_A, True), (KEY_B, True), (KEY_C, True), (WRONG, False),
                            (KEY_A[:-1], False), (KEY_A + "x", False), ("", False),
                            (KEY_A.upper(), False), ("\udcff" + KEY_A, False)):  # fmt: skip
        calls.clear()
        assert keys.matches(given) is expected, given
        assert len(calls) == 3


def test_check_counts_refusals_by_reason() -> None:
    keys, metrics = ApiKeys([KEY_A]), Metrics()
    keys.check(KEY_A, "detect", metrics)
    for given, reason in ((None, "missing"), ("", "missing"), (WRONG, "wrong")):
        with pytest.raises(UnauthorizedError) as err:
            keys.check(given, "deepstack", metrics)
        assert err.value.status == 401 and err.value.headers == {"WWW-Authenticate": "Bearer"}
        assert (reason == "wrong") == (err.value.message == "API key not accepted")

    def counted(route: str, reason: str) -> float | None:
        labels = {"route": route, "reason": reason}
        return metrics.registry.get_sample_value("detector_api_key_refusals_total", labels)

    assert counted("deepstack", "missing") == 2 and counted("deepstack", "wrong") == 1
    assert counted("detect", "wrong") == 0


def test_refresh_rotates_and_survives_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(KEY_A)
    keys = ApiKeys.from_setting(SecretStr(str(path)))
    assert keys is not None and keys.matches(KEY_A)
    path.write_text(f"{KEY_B}\n{KEY_C}\n")
    keys.refresh()
    assert not keys.matches(KEY_A) and keys.matches(KEY_B) and keys.matches(KEY_C)
    path.write_text("\n")
    keys.refresh()  # no key left: the previous ones stay (logged)
    assert keys.matches(KEY_B)
    path.unlink()
    keys.refresh()  # gone: the same
    assert keys.matches(KEY_C)
    listed = ApiKeys([KEY_A])
    listed.refresh()  # a comma list has no file: nothing to re-read
    assert listed.matches(KEY_A)


def test_key_from_headers() -> None:
    def key(**headers: str) -> str | None:
        return key_from_headers(Headers({k.replace("_", "-"): v for k, v in headers.items()}))

    assert key(authorization=f"Bearer {KEY_A}") == KEY_A
    assert key(authorization=f"BEARER   {KEY_A}  ") == KEY_A
    assert key(x_api_key=f" {KEY_B} ") == KEY_B
    assert key(authorization=f"Bearer {KEY_A}", x_api_key=KEY_B) == KEY_A  # Bearer first
    assert key(authorization=f"Basic {KEY_A}", x_api_key=KEY_B) == KEY_B
    assert key(authorization="Bearer ") is None and key(x_api_key="  ") is None
    assert key() is None
