"""The Open Inference Protocol (KServe v2) tensor encoding, pure Python + NumPy: parse an
infer request (JSON, or JSON + binary tensors: Triton's binary data extension) and build the
response. Used by service.routes_v2."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import BadRequestError
from service.json_input import decode_base64_image, json_error_at

HEADER_LENGTH = "inference-header-content-length"
INPUT_NAME = "image"
OIP_DTYPES: dict[str, str] = {"float32": "FP32", "int64": "INT64", "int32": "INT32"}


@dataclass
class InferRequest:
    images: list[bytes]
    shape: list[int]
    request_id: str | None
    parameters: dict[str, Any]
    outputs: list[dict[str, Any]] | None  # None: all outputs
    binary_output: bool = False  # the request's default for outputs


def unpack_bytes_tensor(blob: bytes) -> list[bytes]:
    """Triton's BYTES serialisation: each element as a uint32 little-endian length + bytes."""
    out, pos = [], 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise BadRequestError("BYTES tensor: truncated element length")
        (n,) = struct.unpack_from("<I", blob, pos)
        pos += 4
        if pos + n > len(blob):
            raise BadRequestError("BYTES tensor: element longer than the data")
        out.append(blob[pos : pos + n])
        pos += n
    return out


def pack_bytes_tensor(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def _flatten(data: object) -> list[object]:
    if isinstance(data, list):
        return [x for item in data for x in _flatten(item)]
    return [data]


def parse_infer_request(body: bytes, header_length: str | None, max_bytes: int) -> InferRequest:
    """The request body -> the encoded images (BYTES input `image`, shape [N] or [N, 1])."""
    binary = b""
    if header_length is not None:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise BadRequestError("Inference-Header-Content-Length is not a valid length")
        n = int(header_length)
        body, binary = body[:n], body[n:]
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"malformed JSON inference header{json_error_at(exc)}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise BadRequestError('inference request: "inputs" (a list) is required')
    inputs = doc["inputs"]
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequestError(f"inference request: expected one input '{INPUT_NAME}'")
    tensor = inputs[0]
    if tensor.get("name") != INPUT_NAME or tensor.get("datatype") != "BYTES":
        raise BadRequestError(
            f"input must be named '{INPUT_NAME}' with datatype BYTES (the encoded image files)"
        )
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 2
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
            or (len(shape) == 2 and shape[1] != 1)):  # fmt: skip
        raise BadRequestError(f"input '{INPUT_NAME}': shape must be [N] or [N, 1], got {shape}")
    params = tensor.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequestError("input parameters must be an object")
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if not isinstance(size, int) or size < 0 or size > len(binary):
            raise BadRequestError("binary_data_size does not match the binary data sent")
        images = unpack_bytes_tensor(binary[:size])
    elif "data" in tensor:
        images = [
            decode_base64_image(v, max_bytes, f"{INPUT_NAME}[{i}]")
            for i, v in enumerate(_flatten(tensor["data"]))
        ]
    else:
        raise BadRequestError(f"input '{INPUT_NAME}' has neither data nor binary_data_size")
    if len(images) != shape[0]:
        raise BadRequestError(f"input '{INPUT_NAME}': shape {shape} but {len(images)} elements")
    parameters = doc.get("parameters") or {}
    outputs = doc.get("outputs")
    if not isinstance(parameters, dict) or not (outputs is None or isinstance(outputs, list)):
        raise BadRequestError('"parameters" must be an object and "outputs" a list')
    if outputs is not None and not all(isinstance(o, dict) and "name" in o for o in outputs):
        raise BadRequestError('each entry of "outputs" needs a "name"')
    rid = doc.get("id")
    binary_output = bool(parameters.get("binary_data_output", False))
    return InferRequest(images, shape, None if rid is None else str(rid), parameters, outputs,
                        binary_output)  # fmt: skip


def encode_outputs(
    tensors: dict[str, np.ndarray], req: InferRequest
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Output tensors -> (JSON output entries, binary chunks in the same order)."""
    if req.outputs is None:
        wanted = [(name, req.binary_output) for name in tensors]
    else:
        wanted = []
        for o in req.outputs:
            if o["name"] not in tensors:
                raise BadRequestError(
                    f"unknown output {o['name']!r}; outputs: {', '.join(tensors)}"
                )
            p = o.get("parameters") or {}
            wanted.append((o["name"], bool(p.get("binary_data", req.binary_output))))
    entries, chunks = [], []
    for name, as_binary in wanted:
        arr = tensors[name]
        dtype = "BYTES" if arr.dtype == object else OIP_DTYPES[str(arr.dtype)]
        entry: dict[str, Any] = {"name": name, "datatype": dtype, "shape": list(arr.shape)}
        if as_binary:
            raw = (
                pack_bytes_tensor([s.encode() for s in arr.ravel()])
                if dtype == "BYTES"
                else np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
            )
            entry["parameters"] = {"binary_data_size": len(raw)}  # fmt: skip
            chunks.append(raw)
        else:
            entry["data"] = arr.ravel().tolist()
        entries.append(entry)
    return entries, chunks
