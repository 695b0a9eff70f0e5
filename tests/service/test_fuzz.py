"""Every value of a valid request replaced by hostile JSON, or dropped: never a 5xx.
Exhaustive and deterministic: each path of a valid /v2 infer request (JSON and binary
form), /detect and /detect/batch JSON body, each value of HOSTILE, and the header numbers; each
answer is 2xx or 4xx in the route's error shape, with a short message (nothing echoed whole)."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bench.attacks.images import jpeg
from service.oip import pack_bytes_tensor
from tests.service.test_oip import MODEL

INFER = f"/v2/models/{MODEL}/infer"
IMAGE = jpeg(64, 48)
B64 = base64.b64encode(IMAGE).decode()
# name -> raw JSON text put in place of a value (raw: numbers json.dumps cannot write)
HOSTILE: dict[str, str | None] = {
    "list": "[1, 2]",
    "dict": '{"a": 1}',
    "string": '"x"',
    "false-string": '"false"',
    "number": "-1.5",
    "float-overflow": "1e400",
    "nan": "NaN",
    "huge-int": "1" + "0" * 5000,  # over the 4,300 digits int() takes
    "big-int": "1" + "0" * 4000,
    "bool": "true",
    "null": "null",
    "deep-list": "[" * 2000 + "]" * 2000,
    "unicode-digits": '"\\u00b2\\u0661"',
    "drop": None,  # the key (or list element) removed
}
_HOLE = "\x00hole\x00"
Path = tuple[str | int, ...]

V2_PARAMETERS = {"score_threshold": 0.3, "max_detections": 10, "classes": ["cat", "dog"],
                 "binary_data_output": False}  # fmt: skip
V2_JSON: dict[str, Any] = {
    "id": "r1",
    "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [B64],
                "parameters": {}}],
    "parameters": V2_PARAMETERS,
    "outputs": [{"name": "boxes", "parameters": {"binary_data": False}}, {"name": "class_names"}],
}  # fmt: skip
BLOB = pack_bytes_tensor([IMAGE])
V2_BINARY: dict[str, Any] = {
    "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1, 1],
                "parameters": {"binary_data_size": len(BLOB)}}],
    "parameters": V2_PARAMETERS,
    "outputs": [{"name": "scores", "parameters": {"binary_data": True}}],
}  # fmt: skip
DETECT: dict[str, Any] = {"image": B64}
BATCH: dict[str, Any] = {"images": [B64, B64]}


def paths(doc: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every path in `doc`, the root included, parents before children."""
    yield prefix
    if isinstance(doc, (dict, list)):
        for key, value in doc.items() if isinstance(doc, dict) else enumerate(doc):
            yield from paths(value, (*prefix, key))


def mutated(doc: Any, path: Path, raw: str | None) -> bytes:
    """`doc` as JSON text with the value at `path` replaced by `raw` (None: removed)."""
    if not path:
        return b"" if raw is None else raw.encode()
    out = copy.deepcopy(doc)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    if raw is None:
        del parent[path[-1]]
        return json.dumps(out).encode()
    parent[path[-1]] = _HOLE
    return json.dumps(out).replace(json.dumps(_HOLE), raw).encode()


def check(client: TestClient, route: str, body: bytes, headers: dict[str, Any], what: str,
          failures: list[str]) -> None:  # fmt: skip
    """One request: a failure noted unless 2xx, or 4xx in the route's error shape."""
    r = client.post(route, content=body, headers=headers)
    if r.status_code < 400:
        return
    try:
        error = r.json()["error"]
        message = error if route == INFER else error["message"]
        shaped = isinstance(message, str) and (route == INFER or isinstance(error["code"], str))
    except (ValueError, KeyError, TypeError):
        shaped, message = False, r.text
    if r.status_code >= 500 or not shaped or len(message) > 500:
        failures.append(f"{what}: {r.status_code} {r.text[:200]}")


def fuzz(client: TestClient, route: str, doc: Any, blob: bytes | None = None) -> list[str]:
    failures: list[str] = []
    for path in paths(doc):
        for name, raw in HOSTILE.items():
            body = mutated(doc, path, raw)
            headers: dict[str, Any] = {"content-type": "application/json"}
            if blob is not None:
                headers = {"inference-header-content-length": str(len(body))}
                body += blob
            check(client, route, body, headers, f"{route} {list(path)} <- {name}", failures)
    return failures


@pytest.mark.parametrize(
    ("route", "doc", "blob"),
    [(INFER, V2_JSON, None), (INFER, V2_BINARY, BLOB), ("/detect", DETECT, None),
     ("/detect/batch", BATCH, None)],
    ids=["v2-json", "v2-binary", "detect", "detect-batch"],
)  # fmt: skip
def test_no_value_anywhere_yields_5xx(
    client: TestClient, route: str, doc: Any, blob: bytes | None
) -> None:
    assert check_valid(client, route, doc, blob)
    failures = fuzz(client, route, doc, blob)
    assert not failures, "\n".join(failures)


def check_valid(client: TestClient, route: str, doc: Any, blob: bytes | None) -> bool:
    """The unmutated request is answered 200 (so each mutation is what breaks it)."""
    body = json.dumps(doc).encode()
    headers = {"content-type": "application/json"}
    if blob is not None:
        headers = {"inference-header-content-length": str(len(body))}
        body += blob
    r = client.post(route, content=body, headers=headers)
    return r.status_code == 200 or pytest.fail(f"{route}: {r.status_code} {r.text}")


@pytest.mark.parametrize(
    "value",
    [b"\xb2", "\u0661".encode(), b"9" * 5000, b"-1", b"", b" 1", b"1e3", b"0x10", b"0",
     b"99999999999999999999"],
)  # fmt: skip
def test_header_length_values(client: TestClient, value: bytes) -> None:
    body = json.dumps(V2_BINARY).encode() + BLOB
    r = client.post(INFER, content=body, headers={"inference-header-content-length": value})
    assert r.status_code == 400 and isinstance(r.json()["error"], str), r.text
