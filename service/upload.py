"""Reading the uploaded image: bounded in bytes, in time, in memory and in multipart parts.

Accepted bodies: `multipart/form-data` with a field `image`, the raw bytes with an `image/*`
or `application/octet-stream` content type (or none), or `application/json`
`{"image": "<base64>"}` (service.json_input). Content-Length is checked up front and the stream
is cut off as soon as it passes the limit (chunked uploads included); a multipart body may
exceed the limit by `MULTIPART_OVERHEAD` bytes for its envelope, its image may not.
The whole body must arrive before a deadline (else 408), the bytes held by all requests
together stay within a `MemoryBudget` (else 503), multipart and JSON bodies are parsed off the
event loop, and a multipart body is refused after `MAX_PARTS` parts (`parts_limit` for the
routes that take several images). Every route that takes images reads them this way
(`read_bounded` under service.intake).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from service.errors import (
    BadRequestError,
    InvalidParameterError,
    OverloadedError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
)
from service.json_input import JSON_TYPE, json_body_limit, json_single_image

T = TypeVar("T")
IMAGE_FIELD = "image"
MULTIPART_OVERHEAD = 64 * 1024
MAX_PARTS = 16  # a client sends one part (`image`); a few more are tolerated, floods are not
MAX_PART_HEADER_BYTES = 8 * 1024
RAW_TYPES = ("application/octet-stream", "")


# Bodies are parsed (multipart, JSON, base64) one at a time on this thread: parsers hold the
# GIL for long stretches, so several at once would starve the event loop (and multiply the
# transient copies). A flood waits here, not on the loop.
_PARSER = ThreadPoolExecutor(1, thread_name_prefix="body-parser")


async def parse_off_loop(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on the body-parser thread."""
    return await asyncio.get_running_loop().run_in_executor(_PARSER, fn, *args)


def parts_limit(images: int) -> int:
    """Multipart parts allowed in a body of up to `images` images: those, plus the extra parts
    a one-image body may have."""
    return images + MAX_PARTS - 1


class MemoryBudget:
    """Bytes of request bodies held in memory, all requests together (event-loop only)."""

    def __init__(self, limit: int, retry_after_s: int = 1) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.used = 0

    def hold(self) -> BudgetHold:
        return BudgetHold(self)


class BudgetHold:
    """One request's share of the budget: grows while its body arrives, freed at exit."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.held = 0

    def take(self, n: int) -> None:
        b = self.budget
        if b.used + n > b.limit:
            raise OverloadedError(
                "server busy: too many uploads in memory; retry later",
                headers={"Retry-After": str(b.retry_after_s)},
            )
        b.used += n
        self.held += n

    def __enter__(self) -> BudgetHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.budget.used -= self.held
        self.held = 0


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"request body is larger than the limit of {limit} bytes")


async def _chunks(request: Request, deadline: float | None) -> AsyncIterator[bytes]:
    """The body's chunks; RequestTimeoutError once `deadline` (time.monotonic()) passes."""
    stream = request.stream().__aiter__()
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        try:
            if remaining is not None and remaining <= 0:
                raise asyncio.TimeoutError
            chunk = await asyncio.wait_for(stream.__anext__(), remaining)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise RequestTimeoutError(
                "the request body did not arrive in time", headers={"Connection": "close"}
            ) from None
        yield chunk


async def read_bounded(
    request: Request, limit: int, deadline: float | None = None, hold: BudgetHold | None = None
) -> bytes:
    """The whole body, or PayloadTooLargeError as soon as it is known to exceed `limit`,
    RequestTimeoutError when it is not complete by `deadline`, OverloadedError when `hold`'s
    budget runs out."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and (
            len(declared) > 18 or int(declared) > limit):  # ASCII digits only  # fmt: skip
        raise _too_large(limit)
    buf = bytearray()
    try:
        async for chunk in _chunks(request, deadline):
            if hold is not None:
                hold.take(len(chunk))
            buf += chunk
            if len(buf) > limit:
                raise _too_large(limit)
    except ClientDisconnect as exc:
        raise BadRequestError("client disconnected before the body was complete") from exc
    return bytes(buf)


@dataclass
class _PartCollector:
    """Callbacks for python-multipart: keeps the data of every part named in `names`, by name,
    in order."""

    names: tuple[bytes, ...]
    max_parts: int = MAX_PARTS
    parts: dict[bytes, list[bytearray]] = field(default_factory=dict)
    ended: bool = False
    n_parts: int = 0
    _capturing: bool = False
    _header_field: bytearray = field(default_factory=bytearray)
    _header_value: bytearray = field(default_factory=bytearray)
    _part_name: bytes | None = None

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_bytes(self._header_field, d[s:e]),
            "on_header_value": lambda d, s, e: self._header_bytes(self._header_value, d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self.n_parts += 1
        if self.n_parts > self.max_parts:
            raise BadRequestError(f"multipart body has more than {self.max_parts} parts")
        self._part_name = None
        self._header_field.clear()
        self._header_value.clear()

    def _header_bytes(self, buf: bytearray, data: bytes) -> None:
        buf.extend(data)
        if len(self._header_field) + len(self._header_value) > MAX_PART_HEADER_BYTES:
            raise BadRequestError(f"multipart part header over {MAX_PART_HEADER_BYTES} bytes")

    def _header_end(self) -> None:
        if bytes(self._header_field).strip().lower() == b"content-disposition":
            _, options = parse_options_header(bytes(self._header_value))
            self._part_name = options.get(b"name")
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        self._capturing = self._part_name is not None and self._part_name in self.names
        if self._capturing:
            assert self._part_name is not None
            self.parts.setdefault(self._part_name, []).append(bytearray())

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._capturing and self._part_name is not None:
            self.parts[self._part_name][-1].extend(data[start:end])

    def _part_end(self) -> None:
        self._capturing = False

    def _end(self) -> None:
        self.ended = True


def extract_multipart_form(
    body: bytes, content_type: str, names: tuple[str, ...], max_parts: int = MAX_PARTS
) -> dict[str, list[bytes]]:
    """The parts named in `names` of a complete multipart/form-data body: name -> each part's
    bytes, in order (absent names are missing). BadRequestError after `max_parts` parts of any
    name, on a malformed or truncated body."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequestError("multipart/form-data without a boundary")
    collector = _PartCollector(tuple(n.encode() for n in names), max_parts)
    try:
        parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise BadRequestError("malformed multipart body") from exc
    if not collector.ended:
        raise BadRequestError("truncated multipart body (no closing boundary)")
    return {k.decode(): [bytes(p) for p in v] for k, v in collector.parts.items()}


def extract_multipart_fields(
    body: bytes, content_type: str, name: str = IMAGE_FIELD, max_parts: int = MAX_PARTS
) -> list[bytes]:
    """Bytes of every part named `name` of a complete multipart/form-data body, in order
    (BadRequestError after `max_parts` parts of any name; 422 when there is none)."""
    parts = extract_multipart_form(body, content_type, (name,), max_parts).get(name)
    if not parts:
        raise InvalidParameterError(f"multipart field '{name}' is required")
    return parts


def extract_multipart_field(body: bytes, content_type: str, name: str = IMAGE_FIELD) -> bytes:
    """Bytes of the one part named `name` (a second one is a 422, never silently dropped)."""
    parts = extract_multipart_fields(body, content_type, name)
    if len(parts) > 1:
        raise InvalidParameterError(
            f"multipart field '{name}' was sent {len(parts)} times; this route takes one "
            "image: send several to POST /detect/batch"
        )
    return parts[0]


async def read_image_upload(
    request: Request, max_bytes: int, deadline: float | None = None, hold: BudgetHold | None = None
) -> tuple[bytes, int]:
    """(image bytes, request body bytes read) according to the request's content type; see
    `read_bounded` for `deadline` and `hold`."""
    content_type = request.headers.get("content-type", "")
    media = parse_options_header(content_type)[0].decode("latin-1").lower()
    if media == "multipart/form-data":
        body = await read_bounded(request, max_bytes + MULTIPART_OVERHEAD, deadline, hold)
        data = await parse_off_loop(extract_multipart_field, body, content_type)
        if len(data) > max_bytes:
            raise _too_large(max_bytes)
        return data, len(body)
    if media == JSON_TYPE:
        body = await read_bounded(request, json_body_limit(max_bytes), deadline, hold)
        return await parse_off_loop(json_single_image, body, max_bytes), len(body)
    if media.startswith("image/") or media in RAW_TYPES:
        data = await read_bounded(request, max_bytes, deadline, hold)
        return data, len(data)
    raise UnsupportedMediaTypeError(
        f"content type {media!r} is not accepted: send multipart/form-data with a field "
        f"'{IMAGE_FIELD}', the image bytes as image/* or application/octet-stream, or "
        f'application/json {{"{IMAGE_FIELD}": "<base64>"}}'
    )
