"""Every route that takes images reads them the hardened way (service.intake), in
every body form: refused at arrival when the queue is full (before the body is
read), the upload memory budget, the part limit, parsing off the event loop and error texts
without library internals. The body deadline (408) is tested against a real server in
tests/service/test_attacks.py."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

import service.routes.batch
import service.routes.deepstack
import service.routes.v2
import service.upload
from bench.attacks.images import jpeg, multipart
from service.errors import RequestTimeoutError
from service.upload import MAX_PARTS, parts_limit

AppFactory = Callable[..., Any]
MODEL = "fcos-tiny"
MULTIPART = {"content-type": "multipart/form-data; boundary=b0undary"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def v2_body(images: list[bytes]) -> dict[str, Any]:
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)],
                        "data": [b64(im) for im in images]}]}  # fmt: skip


# route -> (path, request kwargs for TestClient.post) with the given images
FORMS: dict[str, Callable[[list[bytes]], tuple[str, dict[str, Any]]]] = {
    "/detect json": lambda ims: ("/detect", {"json": {"image": b64(ims[0])}}),
    "/detect/batch": lambda ims: ("/detect/batch", {
        "content": multipart([("image", im, "image/jpeg") for im in ims]), "headers": MULTIPART}),
    "/detect/batch json": lambda ims: ("/detect/batch", {"json": {"images": [b64(im)
                                                                             for im in ims]}}),
    "/v2 infer": lambda ims: (f"/v2/models/{MODEL}/infer", {"json": v2_body(ims)}),
    "deepstack": lambda ims: ("/v1/vision/detection", {
        "content": multipart([("image", ims[0], "image/jpeg")]), "headers": MULTIPART}),
}  # fmt: skip


def error_text(r: Any) -> str:
    error = r.json()["error"]
    return error if isinstance(error, str) else f"{error['code']}: {error['message']}"


@pytest.mark.parametrize("form", FORMS)
def test_memory_budget_covers_every_body_form(serve: AppFactory, form: str) -> None:
    path, kw = FORMS[form]([jpeg(640, 480), jpeg(640, 480)])
    with serve(max_upload_memory_bytes=20_000) as (app, client):
        r = client.post(path, **kw)
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert "overloaded" in error_text(r) or "too many uploads" in error_text(r)
        assert app.state.engine.upload_budget.used == 0  # released
        small_path, small = FORMS[form]([jpeg(32, 32)])
        assert client.post(small_path, **small).status_code == 200
        assert app.state.engine.upload_budget.used == 0


@pytest.mark.parametrize("form", ["/detect/batch", "/v2 infer", "deepstack"])
def test_full_queue_refuses_at_arrival_without_reading(
    gated_serve: AppFactory, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    reads: list[str] = []
    for module in (service.routes.batch, service.routes.v2, service.routes.deepstack):
        inner = module.read_bounded

        async def counted(*args: Any, _inner: Any = inner, **kw: Any) -> bytes:
            reads.append(form)
            return await _inner(*args, **kw)

        monkeypatch.setattr(module, "read_bounded", counted)
    path, kw = FORMS[form]([jpeg(64, 64)])
    with gated_serve(max_queue=0) as (app, c, det), ThreadPoolExecutor(1) as pool:
        det.gate.clear()
        running = pool.submit(c.post, "/detect", content=jpeg(64, 64))
        assert det.started.acquire(timeout=10)
        t0 = time.perf_counter()
        r = c.post(path, **kw)
        assert time.perf_counter() - t0 < 1.0 and r.status_code == 503, r.text
        assert "busy" in error_text(r) and reads == []  # refused before reading the body
        det.gate.set()
        assert running.result().status_code == 200
        assert c.post(path, **kw).status_code == 200 and reads == [form]
        assert app.state.engine.worker.depth == 0


def test_batch_part_limit(serve: AppFactory) -> None:
    with serve(max_batch_images=3) as (_, client):
        limit = parts_limit(3)
        assert limit == 3 + MAX_PARTS - 1
        extra = [(f"x{i}", b"1", "text/plain") for i in range(limit - 3)]
        images = [("image", jpeg(64, 48), "image/jpeg")] * 3
        ok = client.post("/detect/batch", content=multipart(extra + images), headers=MULTIPART)
        assert ok.status_code == 200 and len(ok.json()["results"]) == 3, ok.text
        flood = multipart([*extra, ("y", b"1", "text/plain"), *images])
        r = client.post("/detect/batch", content=flood, headers=MULTIPART)
        assert r.status_code == 400 and f"more than {limit} parts" in error_text(r)
        four = multipart(images + images[:1])
        r = client.post("/detect/batch", content=four, headers=MULTIPART)
        assert r.status_code == 413 and "limit is 3" in error_text(r)


def test_bodies_are_parsed_off_the_event_loop(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, bool] = {}

    def off_loop(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kw: Any) -> Any:
            try:
                asyncio.get_running_loop()
                seen[name] = False
            except RuntimeError:  # no loop in this thread: a worker thread
                seen[name] = True
            return fn(*args, **kw)

        return wrapper

    for module, name in ((service.upload, "json_single_image"),
                         (service.upload, "extract_multipart_field"),
                         (service.routes.batch, "json_image_list"),
                         (service.routes.batch, "extract_multipart_fields"),
                         (service.routes.v2, "parse_infer_request"),
                         (service.routes.deepstack, "parse_form")):  # fmt: skip
        monkeypatch.setattr(module, name, off_loop(name, getattr(module, name)))
    for form in FORMS:
        path, kw = FORMS[form]([jpeg(64, 48)])
        assert client.post(path, **kw).status_code == 200, form
    one = multipart([("image", jpeg(64, 48), "image/jpeg")])
    assert client.post("/detect", content=one, headers=MULTIPART).status_code == 200
    assert seen == dict.fromkeys(seen, True) and len(seen) == 6, seen


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/detect", b'{"image": ', "malformed JSON body at line 1 column 11"),
        ("/detect/batch", b'{"images": "\xff"}', "malformed JSON body (not UTF-8)"),
        ("/detect", b'{"image": "abc$"}', "image: not valid base64"),
        ("/detect/batch", b'{"images": ["!!"]}', "images[0]: not valid base64"),
        (f"/v2/models/{MODEL}/infer", b'{"inputs": [', "malformed JSON inference header at"),
    ],
)
def test_error_texts_carry_no_library_words(
    client: TestClient, path: str, body: bytes, needle: str
) -> None:
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    text = r.text
    assert needle in text, text
    for word in ("Expecting", "codec", "padding", "Only base64", "binascii", "Traceback"):
        assert word not in text, text


@pytest.mark.parametrize(("timeout_ms", "status"), [(None, 408), (60_000, 408), (1000, 504)])
def test_body_deadline_is_408_unless_the_request_deadline_came_first(
    serve: AppFactory, monkeypatch: pytest.MonkeyPatch, timeout_ms: int | None, status: int
) -> None:
    """A body still arriving at its deadline: 408 when DETECTOR_BODY_TIMEOUT_S (30 s) ran out,
    504 when the request's own deadline (`timeout_ms`, earlier) did."""

    async def times_out(*args: Any, **kw: Any) -> bytes:
        raise RequestTimeoutError("the request body did not arrive in time",
                                  headers={"Connection": "close"})  # fmt: skip

    monkeypatch.setattr(service.routes.batch, "read_bounded", times_out)
    path, kw = FORMS["/detect/batch json"]([jpeg(32, 32)])
    query = "" if timeout_ms is None else f"?timeout_ms={timeout_ms}"
    with serve(body_timeout_s=30.0, request_timeout_s=0) as (app, client):
        r = client.post(path + query, **kw)
        assert r.status_code == status and r.headers["connection"] == "close", r.text
        assert app.state.engine.worker.depth == 0 and app.state.engine.upload_budget.used == 0
