"""Reading the uploaded image without ever buffering more than the size limit.

Accepted bodies: `multipart/form-data` with a field `image`, or the raw bytes with an `image/*`
or `application/octet-stream` content type (or none). Content-Length is checked up front and
the stream is cut off as soon as it passes the limit (chunked uploads included); a multipart
body may exceed the limit by `MULTIPART_OVERHEAD` bytes for its envelope, its image may not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from service.errors import (
    BadRequestError,
    InvalidParameterError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)

IMAGE_FIELD = "image"
MULTIPART_OVERHEAD = 64 * 1024
RAW_TYPES = ("application/octet-stream", "")


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"request body is larger than the limit of {limit} bytes")


async def read_bounded(request: Request, limit: int) -> bytes:
    """The whole body, or PayloadTooLargeError as soon as it is known to exceed `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _too_large(limit)
    buf = bytearray()
    try:
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > limit:
                raise _too_large(limit)
    except ClientDisconnect as exc:
        raise BadRequestError("client disconnected before the body was complete") from exc
    return bytes(buf)


@dataclass
class _PartCollector:
    """Callbacks for python-multipart: keeps the data of the first part named `name`."""

    name: bytes
    data: bytearray = field(default_factory=bytearray)
    found: bool = False
    ended: bool = False
    _capturing: bool = False
    _header_field: bytearray = field(default_factory=bytearray)
    _header_value: bytearray = field(default_factory=bytearray)
    _part_name: bytes | None = None

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._part_name = None
        self._header_field.clear()
        self._header_value.clear()

    def _header_end(self) -> None:
        if bytes(self._header_field).strip().lower() == b"content-disposition":
            _, options = parse_options_header(bytes(self._header_value))
            self._part_name = options.get(b"name")
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        self._capturing = not self.found and self._part_name == self.name
        self.found = self.found or self._capturing

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._capturing:
            self.data.extend(data[start:end])

    def _part_end(self) -> None:
        self._capturing = False

    def _end(self) -> None:
        self.ended = True


def extract_multipart_field(body: bytes, content_type: str, name: str = IMAGE_FIELD) -> bytes:
    """Bytes of the first part named `name` of a complete multipart/form-data body."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequestError("multipart/form-data without a boundary")
    collector = _PartCollector(name.encode())
    try:
        parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise BadRequestError(f"malformed multipart body: {exc}") from exc
    if not collector.ended:
        raise BadRequestError("truncated multipart body (no closing boundary)")
    if not collector.found:
        raise InvalidParameterError(f"multipart field '{name}' is required")
    return bytes(collector.data)


async def read_image_upload(request: Request, max_bytes: int) -> tuple[bytes, int]:
    """(image bytes, request body bytes read) according to the request's content type."""
    content_type = request.headers.get("content-type", "")
    media = parse_options_header(content_type)[0].decode("latin-1").lower()
    if media == "multipart/form-data":
        body = await read_bounded(request, max_bytes + MULTIPART_OVERHEAD)
        data = extract_multipart_field(body, content_type)
        if len(data) > max_bytes:
            raise _too_large(max_bytes)
        return data, len(body)
    if media.startswith("image/") or media in RAW_TYPES:
        data = await read_bounded(request, max_bytes)
        return data, len(data)
    raise UnsupportedMediaTypeError(
        f"content type {media!r} is not accepted: send multipart/form-data with a field "
        f"'{IMAGE_FIELD}', or the image bytes as image/* or application/octet-stream"
    )
