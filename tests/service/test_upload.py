"""Bounded body reading (never more than the limit is buffered) and multipart parsing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from bench.attacks.images import jpeg, multipart
from service.errors import BadRequestError, InvalidParameterError, PayloadTooLargeError
from service.upload import extract_multipart_field, extract_multipart_fields, read_bounded

CT = "multipart/form-data; boundary=b0undary"


def streaming_request(chunks: list[bytes], headers: dict[str, str]) -> tuple[Request, list[int]]:
    """A Request whose body arrives in `chunks`; the list counts the chunks handed out."""
    consumed = [0]

    async def receive() -> dict[str, Any]:
        i = consumed[0]
        consumed[0] += 1
        return {"type": "http.request", "body": chunks[i], "more_body": i + 1 < len(chunks)}

    scope = {"type": "http", "method": "POST", "path": "/detect", "query_string": b"",
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}  # fmt: skip
    return Request(scope, receive), consumed


def test_stream_is_cut_off_past_the_limit() -> None:
    chunks = [b"x" * 1000] * 1000  # 1 MB in 1 kB chunks, no Content-Length (chunked upload)
    request, consumed = streaming_request(chunks, {})
    with pytest.raises(PayloadTooLargeError):
        asyncio.run(read_bounded(request, 10_000))
    assert consumed[0] == 11  # 11 kB read, then stopped


def test_content_length_is_checked_before_reading() -> None:
    request, consumed = streaming_request([b"x" * 100], {"content-length": "20000"})
    with pytest.raises(PayloadTooLargeError):
        asyncio.run(read_bounded(request, 10_000))
    assert consumed[0] == 0


def test_body_at_the_limit_is_accepted() -> None:
    request, _ = streaming_request([b"x" * 5000, b"y" * 5000], {"content-length": "10000"})
    assert len(asyncio.run(read_bounded(request, 10_000))) == 10_000


def test_multipart_field_anywhere_and_quoted_boundary() -> None:
    image = jpeg(32, 32)
    body = multipart([("note", b"hello", "text/plain"), ("image", image, "image/jpeg")])
    assert extract_multipart_field(body, CT) == image
    assert extract_multipart_field(body, 'multipart/form-data; boundary="b0undary"') == image
    # A second image part is never silently dropped: 422 here, all of them for /detect/batch.
    twice = multipart([("image", image, "image/jpeg"), ("note", b"x", "text/plain"),
                       ("image", b"second", "image/jpeg")])  # fmt: skip
    with pytest.raises(InvalidParameterError, match="sent 2 times"):
        extract_multipart_field(twice, CT)
    assert extract_multipart_fields(twice, CT) == [image, b"second"]


@pytest.mark.parametrize(
    ("body", "ctype", "error"),
    [
        (multipart([("image", b"abc", "image/jpeg")]), "multipart/form-data", BadRequestError),
        (multipart([("image", b"abc", "image/jpeg")])[:-30], CT, BadRequestError),
        (b"garbage without any boundary", CT, BadRequestError),
        (multipart([("other", b"abc", "image/jpeg")]), CT, InvalidParameterError),
        (b"", CT, BadRequestError),
    ],
    ids=["no-boundary", "truncated", "garbage", "no-image-field", "empty"],
)
def test_multipart_errors(body: bytes, ctype: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        extract_multipart_field(body, ctype)


def test_multipart_image_limit(serve: Any) -> None:
    """The multipart envelope may add a little; the image itself must fit the limit."""
    small = jpeg(32, 32)
    with serve(max_upload_bytes=len(small)) as (_, c):
        ok = c.post("/detect", content=multipart([("image", small, "image/jpeg")]),
                    headers={"content-type": CT})  # fmt: skip
        assert ok.status_code == 200
        big = c.post("/detect", content=multipart([("image", small + b"x", "image/jpeg")]),
                     headers={"content-type": CT})  # fmt: skip
        assert big.status_code == 413


def test_empty_multipart_image_is_400(client: TestClient) -> None:
    r = client.post("/detect", files={"image": ("a.jpg", b"", "image/jpeg")})
    assert r.status_code == 400 and r.json()["error"]["code"] == "empty_input"
