"""Inference-protocol bodies validated before the work they would cause:
outputs named once each, the shape checked before any element is decoded, elements counted while
they are unpacked, `data` nesting bounded, header numbers plain ASCII digits, every JSON body
bounded in tokens and nesting; client input is answered 4xx, never 500. In process (the parser,
the app) and against `python -m service` (time, peak RSS, a concurrent /detect, the log)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from bench.attacks.images import jpeg, multipart
from bench.attacks.server import Server, ready_server
from bench.attacks.stalls import read_response
from service.errors import BadRequestError, InvalidParameterError, PayloadTooLargeError
from service.json_input import MAX_JSON_TOKENS
from service.oip import (
    OIP_OUTPUT_NAMES,
    pack_bytes_tensor,
    parse_infer_request,
    unpack_bytes_tensor,
)
from service.upload import read_bounded
from tests import wait_until
from tests.service.test_oip import MODEL, infer_json

INFER = f"/v2/models/{MODEL}/infer"
MiB = 1024 * 1024
B64 = base64.b64encode(jpeg(64, 48)).decode()


def request(**extra: Any) -> bytes:
    doc = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [B64]}]}
    return json.dumps({**doc, **extra}).encode()


def parse(body: bytes, header: str | None = None, max_images: int = 16) -> Any:
    return parse_infer_request(body, header, 10 * MiB, max_images)


def binary_request(blob: bytes, shape: list[int], **extra: Any) -> tuple[bytes, str]:
    tensor = {"name": "image", "datatype": "BYTES", "shape": shape,
              "parameters": {"binary_data_size": len(blob)}}  # fmt: skip
    header = json.dumps({"inputs": [tensor], **extra}).encode()
    return header + blob, str(len(header))


@pytest.mark.parametrize(
    ("extra", "error", "needle"),
    [
        ({"outputs": [{"name": "boxes"}] * 2000}, BadRequestError, "more than once"),
        ({"outputs": [{"name": ["boxes"]}]}, BadRequestError, '"name" (a string)'),
        ({"outputs": [{"name": {"a": 1}}]}, BadRequestError, '"name" (a string)'),
        ({"outputs": [{"name": "masks"}]}, BadRequestError, "unknown output 'masks'"),
        ({"outputs": [{"name": "boxes", "parameters": [1]}]}, BadRequestError, "an object"),
        ({"outputs": [{"name": "boxes", "parameters": "x"}]}, BadRequestError, "an object"),
        ({"outputs": "boxes"}, BadRequestError, "must be a list"),
        ({"parameters": {"binary_data_output": "false"}}, InvalidParameterError, "true or false"),
        ({"parameters": {"binary_data_output": 0}}, InvalidParameterError, "true or false"),
        ({"outputs": [{"name": "boxes", "parameters": {"binary_data": "false"}}]},
         InvalidParameterError, "binary_data"),
        ({"parameters": []}, BadRequestError, "an object"),
        ({"id": {"a": 1}}, BadRequestError, '"id" must be a string'),
    ],
)  # fmt: skip
def test_outputs_and_flags_are_checked_not_coerced(
    extra: dict[str, Any], error: type[Exception], needle: str
) -> None:
    with pytest.raises(error, match=needle.replace("(", r"\(").replace(")", r"\)")):
        parse(request(**extra))


def test_outputs_resolved_once_each() -> None:
    outputs = [{"name": "scores", "parameters": {"binary_data": True}}, {"name": "boxes"}]
    req = parse(request(outputs=outputs, parameters={"binary_data_output": False}))
    assert req.outputs == [("scores", True), ("boxes", False)]
    assert parse(request()).outputs == [(name, False) for name in OIP_OUTPUT_NAMES]


def test_shape_is_checked_before_any_element_is_decoded() -> None:
    bad = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [17],
                                  "data": ["!!"] * 17}]}).encode()  # fmt: skip
    with pytest.raises(PayloadTooLargeError, match="17 images; the limit is 16"):
        parse(bad)
    huge = request().replace(b'"shape": [1]', b'"shape": [1' + b"0" * 4000 + b"]")
    with pytest.raises(PayloadTooLargeError) as exc:
        parse(huge)
    assert len(str(exc.value)) < 200  # the number is not echoed whole


def test_elements_are_counted_while_unpacked() -> None:
    """Both forms stop at the first element past the shape, before what follows is looked at
    (a truncated length, a list nested too deep)."""
    blob = pack_bytes_tensor([b"", b""]) + b"\x01"
    with pytest.raises(BadRequestError, match="more than 1 elements"):
        unpack_bytes_tensor(blob, 1)
    with pytest.raises(BadRequestError, match="truncated"):
        unpack_bytes_tensor(blob)
    with pytest.raises(BadRequestError, match="more than 1 elements"):
        parse(*binary_request(blob, [1]))
    deep = b'[[[[""]]]]'
    body = b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["a", "b", '
    with pytest.raises(BadRequestError, match="more than 1 elements"):
        parse(body + deep + b"]}]}")
    with pytest.raises(BadRequestError, match="nested deeper than 2"):
        parse(body.replace(b'"a", "b", ', b"") + deep + b"]}]}")


@pytest.mark.parametrize("value", ["\xb2", "\u0661\u0662", "9" * 5000, " 12", "+12", "1_0", ""])
def test_header_length_is_plain_ascii_digits(value: str) -> None:
    with pytest.raises(BadRequestError, match="Inference-Header-Content-Length"):
        parse(request(), value)


@pytest.mark.parametrize("declared", ["\xb2", "9" * 5000, "1" * 19])
def test_content_length_is_plain_ascii_digits(declared: str) -> None:
    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(b"content-length", declared.encode("latin-1"))]}  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"x", "more_body": False}

    def read() -> bytes:
        return asyncio.run(read_bounded(Request(scope, receive), 1000))

    if declared.isascii():  # more digits than any limit: 413 up front
        with pytest.raises(PayloadTooLargeError):
            read()
    else:  # not a number: ignored (h11 refuses it first), the stream itself is bounded
        assert read() == b"x"


@pytest.mark.parametrize("path", ["/detect", "/detect/batch", INFER])
def test_json_bounded_in_tokens_and_nesting(client: TestClient, path: str) -> None:
    key = "image" if path == "/detect" else "images"
    bodies = {
        "JSON nested too deeply": b'{"%s": ' % key.encode() + b"[" * 5000 + b"]" * 5000 + b"}",
        f"the limit is {MAX_JSON_TOKENS}": b'{"%s": [' % key.encode() + b"0," * 20_000 + b"0]}",
    }
    for needle, body in bodies.items():
        r = client.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert needle in (error if path == INFER else error["message"])


def test_data_nested_two_levels_for_shape_n_1(client: TestClient) -> None:
    doc = infer_json([jpeg(64, 48), jpeg(48, 64)])
    doc["inputs"][0].update(shape=[2, 1], data=[[d] for d in doc["inputs"][0]["data"]])
    assert client.post(INFER, json=doc).status_code == 200
    doc["inputs"][0]["data"] = [[[d]] for d in doc["inputs"][0]["data"]]
    r = client.post(INFER, json=doc)
    assert r.status_code == 400 and "nested deeper" in r.json()["error"]


# --- against `python -m service` (the attacks were measured on a real process) ---------------


@pytest.fixture(scope="module")
def server(tiny_onnx_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with ready_server(tmp_path_factory.mktemp("oip"), tiny_onnx_path) as srv:
        yield srv


@pytest.mark.slow
def test_duplicated_outputs_refused_fast_and_small(server: Server) -> None:
    """2,000 copies of one output on 16 images at 1,000 detections built a
    1.3 GB response on the event loop (45 s, peak RSS 5.7 GB); binary outputs 2.4 GB."""
    doc = infer_json([jpeg(64, 48)] * 16)
    doc["parameters"] = {"score_threshold": 0.0, "max_detections": 1000}
    as_json = {**doc, "outputs": [{"name": "boxes"}] * 2000}
    binary = {**doc, "outputs": [{"name": "boxes", "parameters": {"binary_data": True}}] * 1700}
    with httpx.Client(base_url=server.url, timeout=60) as c:
        for body in (as_json, binary):
            t0 = time.perf_counter()
            r = c.post(INFER, json=body)
            assert r.status_code == 400 and time.perf_counter() - t0 < 2.0, r.text
        assert c.post(INFER, json=doc).status_code == 200  # the same request, outputs once
    assert server.rss_bytes("VmHWM") < 600 * MiB


def _many_elements(n: int, depth: int) -> bytes:
    head = b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": '
    return head + b"[" * depth + b'""' + b',""' * (n - 1) + b"]" * depth + b"}]}"


@pytest.mark.slow
def test_many_tiny_elements_refused_fast_beside_a_normal_detect(server: Server) -> None:
    """44.7 MB of 14.9 M empty strings 100 deep took 28.4 s on the parser
    thread and a concurrent multipart /detect waited 28.5 s; 8 M zero-length binary elements
    3.3 s."""
    big = _many_elements(14_900_000, 100)
    assert len(big) > 44_000_000
    blob = b"\0\0\0\0" * 8_000_000
    binary, header_len = binary_request(blob, [1])
    photo = multipart([("image", jpeg(320, 240), "image/jpeg")])
    answers: dict[str, tuple[int, float]] = {}

    def post(name: str, path: str, body: bytes, headers: dict[str, str]) -> None:
        t0 = time.perf_counter()
        with httpx.Client(base_url=server.url, timeout=60) as c:
            status = c.post(path, content=body, headers=headers).status_code
        answers[name] = status, time.perf_counter() - t0

    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     f"Content-Length: {len(big)}\r\n\r\n".encode() + big)  # fmt: skip
        time.sleep(0.1)  # the body is in (the old code parsed it for 28 s from here on)
        post("detect", "/detect", photo, {"content-type": "multipart/form-data; boundary=b0undary"})
        status, _ = read_response(sock)
        answers["json"] = status, time.perf_counter() - t0
    post("binary", INFER, binary, {"inference-header-content-length": header_len})
    assert {k: v[0] for k, v in answers.items()} == {"json": 400, "detect": 200, "binary": 400}
    assert max(t for _, t in answers.values()) < 2.0, answers
    assert server.rss_bytes("VmHWM") < 600 * MiB


@pytest.mark.slow
def test_client_input_is_4xx_logged_in_one_line(server: Server) -> None:
    """Each of these was a 500 with a traceback, counted as outcome="error"
    (data 700 deep: a 1.5 KB request, a 178 KB log line)."""
    ok = json.loads(request())
    deep = request().replace(b'"data": [', b'"data": ' + b"[" * 700)
    deep = deep.replace(b"]}]", b"]" * 700 + b"}]")
    json_cases: list[tuple[str, bytes, dict[str, str]]] = [
        (INFER, json.dumps({**ok, "outputs": [{"name": ["boxes"]}]}).encode(), {}),
        (INFER, json.dumps({**ok, "outputs": [{"name": {"a": 1}}]}).encode(), {}),
        (INFER, json.dumps({**ok, "outputs": [{"name": "boxes", "parameters": [1]}]}).encode(), {}),
        (INFER, json.dumps({**ok, "outputs": [{"name": "boxes", "parameters": "x"}]}).encode(), {}),
        (INFER, deep, {}),
        (INFER, b"[" * 5000 + b"]" * 5000, {}),
        ("/detect", b'{"image": ' + b"[" * 5000 + b"]" * 5000 + b"}", {}),
        ("/detect/batch", b'{"images": ' + b"[" * 5000 + b"]" * 5000 + b"}", {}),
    ]  # fmt: skip
    before = len(server.log_path.read_text().splitlines())
    rids: set[str] = set()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for path, body, headers in json_cases:
            r = c.post(path, content=body, headers={"content-type": "application/json", **headers})
            assert 400 <= r.status_code < 500, (path, r.text)
            rids.add(r.headers["x-request-id"])
        for value in (b"\xb2", b"9" * 5000):
            r = c.post(INFER, content=request(), headers={"inference-header-content-length": value})
            assert r.status_code == 400, r.text
            rids.add(r.headers["x-request-id"])
    assert len(rids) == len(json_cases) + 2

    def access_lines() -> list[dict[str, object]] | None:  # written after each response is sent
        recs = [rec for rec in server.log_records()
                if rec.get("message") == "request" and rec.get("request_id") in rids]  # fmt: skip
        return recs if len(recs) >= len(rids) else None

    access = wait_until(access_lines, 10, 0.05, what="an access line is missing")
    assert len(access) == len(rids), access  # one line each
    lines = server.log_path.read_text().splitlines()[before:]
    assert "Traceback" not in "\n".join(lines) and max(map(len, lines)) < 2000
    assert all(rec["outcome"] in ("bad_request", "invalid_parameter") for rec in access), access
