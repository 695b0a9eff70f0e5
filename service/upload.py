"""Reading the uploaded image without ever buffering more than the size limit.

Accepted bodies: `multipart/form-data` with a field `image`, the raw bytes with an `image/*`
or `application/octet-stream` content type (or none), or `application/json` `{"image": "<base64>"}`
(service.json_input). Content-Length is checked up front and
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
from service.json_input import JSON_TYPE, json_body_limit, json_single_image

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
    """Callbacks for python-multipart: keeps the data of every part named `name`, in order."""

    name: bytes
    parts: list[bytearray] = field(default_factory=list)
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
        self._capturing = self._part_name == self.name
        if self._capturing:
            self.parts.append(bytearray())

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._capturing:
            self.parts[-1].extend(data[start:end])

    def _part_end(self) -> None:
        self._capturing = False

    def _end(self) -> None:
        self.ended = True


def extract_multipart_fields(
    body: bytes, content_type: str, name: str = IMAGE_FIELD
) -> list[bytes]:
    """Bytes of every part named `name` of a complete multipart/form-data body, in order."""
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
    if not collector.parts:
        raise InvalidParameterError(f"multipart field '{name}' is required")
    return [bytes(p) for p in collector.parts]


def extract_multipart_field(body: bytes, content_type: str, name: str = IMAGE_FIELD) -> bytes:
    """Bytes of the one part named `name` (a second one is a 422, never silently dropped)."""
    parts = extract_multipart_fields(body, content_type, name)
    if len(parts) > 1:
        raise InvalidParameterError(
            f"multipart field '{name}' was sent {len(parts)} times; this route takes one "
            "image: send several to POST /detect/batch"
        )
    return parts[0]


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
    if media == JSON_TYPE:
        body = await read_bounded(request, json_body_limit(max_bytes))
        return json_single_image(body, max_bytes), len(body)
    if media.startswith("image/") or media in RAW_TYPES:
        data = await read_bounded(request, max_bytes)
        return data, len(data)
    raise UnsupportedMediaTypeError(
        f"content type {media!r} is not accepted: send multipart/form-data with a field "
        f"'{IMAGE_FIELD}', the image bytes as image/* or application/octet-stream, or "
        f'application/json {{"{IMAGE_FIELD}": "<base64>"}}'
    )
