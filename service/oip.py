"""The Open Inference Protocol (KServe v2) tensor encoding, pure Python + NumPy: parse an
infer request (JSON, or JSON + binary tensors: Triton's binary data extension) and build the
response. Used by service.routes.v2.

A request is validated before any work in proportion to it: the JSON is loaded by
service.json_input.load_json (token count, nesting), the header length must be plain digits,
the shape is checked against DETECTOR_MAX_BATCH_IMAGES before an element is decoded, elements
are counted while they are unpacked (stopping at the first one over the shape), `data` may nest
at most MAX_DATA_DEPTH lists, and `outputs` must name each of the model's outputs at most once,
with boolean parameters. Client values never go into messages whole (`brief`)."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import BadRequestError, InvalidParameterError, PayloadTooLargeError
from service.json_input import decode_base64_image, json_kind, load_json

HEADER_LENGTH = "inference-header-content-length"
# The request's one tensor (the encoded image files): not the ONNX graph's input, which is
# export.metadata.INPUT_NAME.
OIP_INPUT = "image"
# The response's tensors: name, datatype, shape (service.routes.v2's module docstring); not the
# ONNX graph's outputs, which are export.metadata.OUTPUT_NAMES.
OIP_OUTPUTS: tuple[tuple[str, str, list[int]], ...] = (
    ("num_detections", "INT32", [-1]),
    ("boxes", "FP32", [-1, -1, 4]),
    ("scores", "FP32", [-1, -1]),
    ("class_ids", "INT64", [-1, -1]),
    ("class_names", "BYTES", [-1, -1]),
)
OIP_OUTPUT_NAMES: tuple[str, ...] = tuple(name for name, _, _ in OIP_OUTPUTS)
OIP_DTYPES: dict[str, str] = {"float32": "FP32", "int64": "INT64", "int32": "INT32"}
# Inference-Header-Content-Length: ASCII digits only (str.isdigit() also takes "²", which int()
# refuses, and int() refuses over 4,300 digits). The largest body read (DETECTOR_MAX_BATCH_BYTES
# in base64: 44.7 MB by default) needs 8 digits; 12 leave room for any configured limit.
MAX_LENGTH_DIGITS = 12
_LENGTH = re.compile(rf"[0-9]{{1,{MAX_LENGTH_DIGITS}}}")
# Lists `data` may nest: shape [N] needs one level, [N, 1] two ([["<b64>"], ...]) unless sent
# flat; deeper is refused at once (700 levels overflowed the recursive flattening).
MAX_DATA_DEPTH = 2
_END = object()


@dataclass
class InferRequest:
    images: list[bytes]
    shape: list[int]
    request_id: str | None
    parameters: dict[str, Any]
    outputs: list[tuple[str, bool]]  # (name, as binary): those asked for, in order; default all


def brief(value: object, limit: int = 60) -> str:
    """A client's value for a message: short whatever it is (a huge string, a deep list)."""
    if (
        isinstance(value, list)
        and len(value) <= 4
        and not any(isinstance(v, (list, dict)) for v in value)
    ):
        text = "[" + ", ".join(brief(v, limit) for v in value) + "]"
    elif isinstance(value, (list, dict)):
        return json_kind(value)
    else:
        text = repr(value[: limit + 1] if isinstance(value, str) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unpack_bytes_tensor(blob: bytes, max_elements: int | None = None) -> list[bytes]:
    """Triton's BYTES serialisation: each element as a uint32 little-endian length + bytes.
    BadRequestError as soon as there are more than `max_elements` (8 M zero-length
    elements took 3.3 s to unpack before they were counted)."""
    out: list[bytes] = []
    pos = 0
    while pos < len(blob):
        if max_elements is not None and len(out) >= max_elements:
            raise BadRequestError(f"BYTES tensor: more than {max_elements} elements (the shape)")
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


def flatten_data(data: object, max_elements: int) -> list[object]:
    """A tensor's `data` (nested lists, or one value) -> its elements in order. Iterative and
    without copies; BadRequestError at the first list nested deeper than MAX_DATA_DEPTH or the
    first element past `max_elements`, whatever follows."""
    out: list[object] = []
    stack = [iter(data if isinstance(data, list) else [data])]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            if len(stack) >= MAX_DATA_DEPTH:
                raise BadRequestError(
                    f"input '{OIP_INPUT}': data nested deeper than {MAX_DATA_DEPTH} lists"
                )
            stack.append(iter(item))
        elif len(out) >= max_elements:
            raise BadRequestError(
                f"input '{OIP_INPUT}': more than {max_elements} elements (the shape)"
            )
        else:
            out.append(item)
    return out


def parse_infer_request(
    body: bytes, header_length: str | None, max_bytes: int, max_images: int
) -> InferRequest:
    """The request body -> the encoded images (BYTES input `image`, shape [N] or [N, 1]) and
    what to answer; every check before the work it guards (see the module docstring)."""
    binary = b""
    if header_length is not None:
        if not _LENGTH.fullmatch(header_length) or int(header_length) > len(body):
            raise BadRequestError("Inference-Header-Content-Length is not a valid length")
        n = int(header_length)
        body, binary = body[:n], body[n:]
    doc = load_json(body, "JSON inference header")
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise BadRequestError('inference request: "inputs" (a list) is required')
    inputs = doc["inputs"]
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequestError(f"inference request: expected one input '{OIP_INPUT}'")
    tensor = inputs[0]
    if tensor.get("name") != OIP_INPUT or tensor.get("datatype") != "BYTES":
        raise BadRequestError(
            f"input must be named '{OIP_INPUT}' with datatype BYTES (the encoded image files)"
        )
    shape = _shape(tensor.get("shape"), max_images)
    params = _object(tensor.get("parameters"), "input parameters")
    parameters = _object(doc.get("parameters"), '"parameters"')
    outputs = _outputs(doc.get("outputs"), _flag(parameters, "binary_data_output", False, ""))
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        raise BadRequestError(f'"id" must be a string, got {json_kind(rid)}')
    images = _elements(tensor, params, binary, shape, max_bytes)
    return InferRequest(images, shape, rid, parameters, outputs)


def _shape(shape: object, max_images: int) -> list[int]:
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 2
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
            or (len(shape) == 2 and shape[1] != 1)):  # fmt: skip
        raise BadRequestError(
            f"input '{OIP_INPUT}': shape must be [N] or [N, 1], got {brief(shape)}"
        )
    if shape[0] == 0:
        raise InvalidParameterError(f"input '{OIP_INPUT}' has no elements")
    if shape[0] > max_images:
        raise PayloadTooLargeError(
            f"input '{OIP_INPUT}': {brief(shape[0])} images; the limit is {max_images}"
        )
    return shape


def _elements(
    tensor: dict[str, Any], params: dict[str, Any], binary: bytes, shape: list[int],
    max_bytes: int,
) -> list[bytes]:  # fmt: skip
    """The input's elements: as many as the shape says, each within `max_bytes`."""
    n = shape[0]
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if (not isinstance(size, int) or isinstance(size, bool) or size < 0
                or size > len(binary)):  # fmt: skip
            raise BadRequestError("binary_data_size does not match the binary data sent")
        images = unpack_bytes_tensor(binary[:size], n)
        for i, data in enumerate(images):
            if len(data) > max_bytes:
                raise PayloadTooLargeError(f"{OIP_INPUT}[{i}] is larger than {max_bytes} bytes")
    elif "data" in tensor:
        values = flatten_data(tensor["data"], n)
        if len(values) != n:
            raise BadRequestError(
                f"input '{OIP_INPUT}': shape {brief(shape)} but {len(values)} elements"
            )
        images = [decode_base64_image(v, max_bytes, f"{OIP_INPUT}[{i}]")
                  for i, v in enumerate(values)]  # fmt: skip
    else:
        raise BadRequestError(f"input '{OIP_INPUT}' has neither data nor binary_data_size")
    if len(images) != n:
        raise BadRequestError(
            f"input '{OIP_INPUT}': shape {brief(shape)} but {len(images)} elements"
        )
    return images


def _object(value: object, what: str) -> dict[str, Any]:
    """An optional JSON object (absent or null: empty); anything else is refused, not coerced."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequestError(f"{what} must be an object, got {json_kind(value)}")
    return value


def _flag(params: dict[str, Any], key: str, default: bool, where: str) -> bool:
    """A boolean parameter: true or false, never coerced (bool("false") is True)."""
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise InvalidParameterError(f"{where}parameter {key}: must be true or false, "
                                    f"got {json_kind(value)}")  # fmt: skip
    return value


def _outputs(outputs: object, binary_default: bool) -> list[tuple[str, bool]]:
    """`outputs` -> (name, as binary) per output asked for: each one of the model's, once
    (so at most len(OIP_OUTPUTS) entries: 2,000 copies once built a 1.3 GB response)."""
    if outputs is None:
        return [(name, binary_default) for name in OIP_OUTPUT_NAMES]
    if not isinstance(outputs, list):
        raise BadRequestError(f'"outputs" must be a list, got {json_kind(outputs)}')
    wanted: dict[str, bool] = {}
    for i, entry in enumerate(outputs):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise BadRequestError(f'outputs[{i}]: an object with a "name" (a string) is required')
        name = entry["name"]
        if name not in OIP_OUTPUT_NAMES:
            raise BadRequestError(
                f"unknown output {brief(name)}; outputs: {', '.join(OIP_OUTPUT_NAMES)}"
            )
        if name in wanted:
            raise BadRequestError(f"output {name!r} is asked for more than once")
        params = _object(entry.get("parameters"), f"outputs[{i}].parameters")
        wanted[name] = _flag(params, "binary_data", binary_default, f"outputs[{i}] ")
    return list(wanted.items())


def encode_outputs(
    tensors: dict[str, np.ndarray], req: InferRequest
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Output tensors -> (JSON output entries, binary chunks in the same order)."""
    entries, chunks = [], []
    for name, as_binary in req.outputs:
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
