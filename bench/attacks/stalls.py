"""Slow uploads. Stalled ones, on every route that takes images, in each body form:
the connection sends its headers and the first bytes of a body, then nothing. Drip-fed ones:
a chunked body in 1-byte chunks. Used by bench/attacks/figures.py,
bench/attacks/figures_round2.py and tests/service/test_attacks*.py."""

from __future__ import annotations

import base64
import contextlib
import socket

import httpx

from bench.attacks.images import jpeg

_PART = b'--B\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n\xff\xd8\xff'
# route -> (path, content type, the first bytes of the body); {model}: the served model's name
STALLS: dict[str, tuple[str, str, bytes]] = {
    "/detect": ("/detect", "image/jpeg", b"\xff\xd8\xff"),
    "/detect json": ("/detect", "application/json", b'{"image": "/9j/'),
    "/detect/batch": ("/detect/batch", "multipart/form-data; boundary=B", _PART),
    "/detect/batch json": ("/detect/batch", "application/json", b'{"images": ["/9j/'),
    "/v2 infer": ("/v2/models/{model}/infer", "application/json", b'{"inputs": [{"name": '),
}


def stalled(
    port: int, route: str = "/detect", model: str = "", declared: int = 100_000,
    timeout_s: float = 45.0,
) -> socket.socket:  # fmt: skip
    """A connection that sent a `declared`-byte request's headers and its first few bytes to
    `route` (a STALLS key), then stalls."""
    path, ctype, first = STALLS[route]
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    head = (f"POST {path.format(model=model)} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {declared}\r\n\r\n")  # fmt: skip
    s.sendall(head.encode() + first)
    return s


def read_response(s: socket.socket) -> tuple[int, bytes]:
    """(status, body) of the one response on `s` (the server closes after it)."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def normal_request(c: httpx.Client, route: str, model: str = "") -> int:
    """The status of one well-formed request to `route` (a STALLS key): small JPEGs, two on
    the routes that take several."""
    a, b = jpeg(), jpeg(200, 150)
    b64 = [base64.b64encode(x).decode() for x in (a, b)]
    match route:
        case "/detect":
            r = c.post("/detect", content=a, headers={"content-type": "image/jpeg"})
        case "/detect json":
            r = c.post("/detect", json={"image": b64[0]})
        case "/detect/batch":
            r = c.post("/detect/batch", files=[("image", ("a.jpg", a)), ("image", ("b.jpg", b))])
        case "/detect/batch json":
            r = c.post("/detect/batch", json={"images": b64})
        case "/v2 infer":
            tensor = {"name": "image", "datatype": "BYTES", "shape": [2], "data": b64}
            r = c.post(f"/v2/models/{model}/infer", json={"inputs": [tensor]})
        case _:
            raise ValueError(route)
    return r.status_code


def drip(port: int, chunks: int, out: list[bytes]) -> None:
    """A chunked upload of `chunks` 1-byte chunks to /detect (a drip-fed body);
    appends what the server answered to `out`."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = b"POST /detect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    block = b"1\r\nx\r\n" * 10_000
    with contextlib.suppress(OSError):
        s.sendall(head)
        for _ in range(chunks // 10_000):
            s.sendall(block)
        s.sendall(b"0\r\n\r\n")
    data = b""
    with contextlib.suppress(OSError):
        while chunk := s.recv(65536):
            data += chunk
    s.close()
    out.append(data)
