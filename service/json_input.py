"""Images sent inside JSON: `{"image": "<base64>"}` (POST /detect) and `{"images": [...]}`
(POST /detect/batch). Standard base64 (padding optional) or a `data:image/...;base64,` URL.

The same limits as binary uploads: each decoded image obeys DETECTOR_MAX_UPLOAD_BYTES, and the
body is read only up to what that many bytes need in base64 (plus a small envelope).
`load_json` is the one JSON loader of every route (/detect, /detect/batch, /v2 infer): bodies
of millions of tiny values or nested thousands deep are refused before or while parsing, never
answered 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from service.errors import (
    BadRequestError,
    InvalidParameterError,
    PayloadTooLargeError,
    ServiceError,
)

JSON_TYPE = "application/json"
JSON_OVERHEAD = 4096  # the envelope: braces, key, quotes, a data-URL prefix, whitespace
_DATA_URL = re.compile(r"^data:[\w.+/-]*(;[\w=.+-]+)*;base64,", re.ASCII)
_WHITESPACE = re.compile(r"\s+")
# Structural JSON tokens (`,` `:` `[` `{`) a body may hold; over it -> 400 before json.loads.
# A legitimate request needs a few dozen (16 images, the envelope, the /v2 parameters and
# outputs); a `classes` list naming every class of a 1,203-class (LVIS) model about 1,200.
# Base64 never contains these bytes, so the images count nothing. 10,000 tokens parse in about
# a millisecond; a 44.7 MB body of 14.9 M empty strings held 15 M (28 s of parsing).
MAX_JSON_TOKENS = 10_000
_NOT_STRUCTURAL = bytes(b for b in range(256) if b not in b",:[{")
# A base64 string longer than this many times its limit is refused before the whitespace is
# stripped (a pass over the whole string): line breaks every 76 characters (MIME) add 3%.
_WHITESPACE_SLACK = 2


def base64_size(n_bytes: int) -> int:
    """Characters of standard (padded) base64 for n bytes."""
    return 4 * (-(-n_bytes // 3))


def json_body_limit(max_image_bytes: int, images: int = 1) -> int:
    """Body bytes that `images` base64 images of at most `max_image_bytes` each may need."""
    return images * (base64_size(max_image_bytes) + JSON_OVERHEAD)


def json_batch_limit(max_batch_bytes: int, max_images: int) -> int:
    """Body bytes a JSON body of several images may need: DETECTOR_MAX_BATCH_BYTES in base64
    plus an envelope per image (POST /detect/batch, /v2 infer: the largest body accepted)."""
    return base64_size(max_batch_bytes) + max_images * JSON_OVERHEAD


def decode_base64_image(value: object, max_bytes: int, where: str) -> bytes:
    """One base64 string -> the image bytes (checked against `max_bytes` before decoding)."""
    if not isinstance(value, str):
        raise InvalidParameterError(f"{where}: expected a base64 string, got {json_kind(value)}")
    if len(value) > _WHITESPACE_SLACK * base64_size(max_bytes) + JSON_OVERHEAD:
        raise PayloadTooLargeError(f"{where}: image is larger than the limit of {max_bytes} bytes")
    text = _WHITESPACE.sub("", _DATA_URL.sub("", value, count=1))
    if len(text) > base64_size(max_bytes) + 2:
        raise PayloadTooLargeError(f"{where}: image is larger than the limit of {max_bytes} bytes")
    text += "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:  # the library's words go to the log
        raise BadRequestError(f"{where}: not valid base64") from exc
    if len(data) > max_bytes:
        raise PayloadTooLargeError(f"{where}: image is larger than the limit of {max_bytes} bytes")
    return data


def json_error_at(exc: Exception) -> str:
    """Where a JSON body broke, in our words (" at line L column C"), or ""."""
    if isinstance(exc, json.JSONDecodeError):
        return f" at line {exc.lineno} column {exc.colno}"
    return " (not UTF-8)" if isinstance(exc, UnicodeDecodeError) else ""


def json_kind(value: object) -> str:
    """What a JSON value is, for error messages (never the value itself: it may be huge)."""
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def load_json(body: bytes, what: str = "JSON body") -> Any:
    """`body` parsed, or BadRequestError (400): over MAX_JSON_TOKENS structural tokens (counted
    in one C pass before parsing), nested deeper than the parser's recursion limit (Python's
    RecursionError, about 1,000 levels), numbers of more than 4,300 digits (ValueError),
    malformed or not UTF-8. `what` names the document in the message."""
    tokens = len(body.translate(None, _NOT_STRUCTURAL))
    if tokens > MAX_JSON_TOKENS:
        raise BadRequestError(
            f"{what}: {tokens} JSON tokens (',' ':' '[' '{{'); the limit is {MAX_JSON_TOKENS}"
        )
    try:
        return json.loads(body)
    except RecursionError as exc:
        raise BadRequestError(f"{what}: JSON nested too deeply") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"malformed {what}{json_error_at(exc)}") from exc


def _load_object(body: bytes, key: str) -> dict[str, Any]:
    doc = load_json(body)
    if not isinstance(doc, dict):
        got = json_kind(doc)
        raise InvalidParameterError(f'JSON body: expected an object {{"{key}": ...}}, got {got}')
    return doc


def json_single_image(body: bytes, max_bytes: int) -> bytes:
    """`{"image": "<base64>"}` -> the image bytes."""
    doc = _load_object(body, "image")
    if "image" not in doc:
        hint = ": several images go to POST /detect/batch" if "images" in doc else ""
        raise InvalidParameterError(f'JSON body: field "image" is required{hint}')
    return decode_base64_image(doc["image"], max_bytes, "image")


def json_image_list(body: bytes, max_bytes: int, max_images: int) -> list[bytes | ServiceError]:
    """`{"images": ["<base64>", ...]}` -> per image its bytes, or the error that image has
    (bad base64, too large); a malformed envelope (not a list of strings) fails the request."""
    doc = _load_object(body, "images")
    images = doc.get("images")
    if not isinstance(images, list) or not images:
        raise InvalidParameterError('JSON body: field "images" must be a non-empty list')
    if len(images) > max_images:
        raise PayloadTooLargeError(
            f"{len(images)} images in one request; the limit is {max_images}"
        )
    for i, value in enumerate(images):
        if not isinstance(value, str):
            got = json_kind(value)
            raise InvalidParameterError(f"images[{i}]: expected a base64 string, got {got}")
    out: list[bytes | ServiceError] = []
    for i, value in enumerate(images):
        try:
            out.append(decode_base64_image(value, max_bytes, f"images[{i}]"))
        except ServiceError as exc:
            out.append(exc)
    return out
