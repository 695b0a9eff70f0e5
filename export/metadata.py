"""The metadata this project writes into ONNX files (all values are strings), pure Python.

A model file is input like any other: `from_strings` checks every field against the schema
below (`validate`) before the service serves anything from it, so a file with odd metadata is
refused with one clear message instead of answering 500 (or garbage) on every later request.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from export.errors import ModelMetadataError

FORMAT_VERSION = "1"
# The ONNX graph's tensor names (the outputs in model.fcos.FCOS.forward's order). The
# service's /v2 API names its own tensors: service.oip.OIP_INPUT, OIP_OUTPUT_NAMES.
INPUT_NAME = "images"
OUTPUT_NAMES: tuple[str, str, str] = ("cls_logits", "box_distances", "centerness_logits")

# Schema bounds. name and version are copied into every response and into the
# detector_model_info Prometheus label: short labels, not documents.
MAX_NAME_CHARS = 128
MAX_VERSION_CHARS = 64
MAX_PRESET_CHARS = 64  # a preset is a config name (model.presets): a short identifier
MAX_CLASS_NAME_CHARS = 64  # a class name is a label drawn on images and listed by GET /model
# GET /model lists every class and each image's scores are (locations x classes) floats; large
# vocabularies (LVIS: 1203 classes) fit, a million-entry list does not.
MAX_CLASSES = 2048
MAX_STRIDE = 1024  # FPN strides are 8..128; a stride beyond the largest input is meaningless
MAX_LEVELS = 16  # FPN levels (the presets have 5)
# The letterbox side: below 32 the largest stride (128 in the presets) sees less than a pixel;
# above 4096 one (3, S, S) float tensor alone is 200 MB and a run takes minutes on a CPU.
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 32, 4096
PRECISIONS = ("fp32", "int8")  # what export.exporter writes (onnx_export, quantize)


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    version: str
    preset: str
    class_names: tuple[str, ...]
    strides: tuple[int, ...]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    precision: str = "fp32"  # "fp32" or "int8"

    def to_strings(self) -> dict[str, str]:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "preset": self.preset,
            "class_names": json.dumps(list(self.class_names)),
            "strides": json.dumps(list(self.strides)),
            "input_size": str(self.input_size),
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "precision": self.precision,
        }

    @classmethod
    def from_strings(cls, d: dict[str, str]) -> ModelMetadata:
        """The metadata of an ONNX file (ModelMetadataError when missing or off the schema)."""
        floats = lambda text: tuple(float(v) for v in _json_list(text))  # noqa: E731
        meta = cls(
            name=_field(d, "name", str),
            version=_field(d, "version", str),
            preset=_field(d, "preset", str),
            class_names=tuple(_field(d, "class_names", _json_list)),
            strides=tuple(_field(d, "strides", _json_list)),
            input_size=_field(d, "input_size", int),
            mean=_field(d, "mean", floats),
            std=_field(d, "std", floats),
            precision=_field({"precision": "fp32", **d}, "precision", str),
        )
        meta.validate()
        return meta

    def validate(self) -> None:
        """Raise ModelMetadataError unless every field is within the schema (the bounds above).

        Messages name the field and the rule, never the (possibly huge) value itself."""
        _text("name", self.name, MAX_NAME_CHARS)
        _text("version", self.version, MAX_VERSION_CHARS)
        _text("preset", self.preset, MAX_PRESET_CHARS)
        names = self.class_names
        if not 1 <= len(names) <= MAX_CLASSES:
            raise ModelMetadataError(f"class_names must list 1 to {MAX_CLASSES} classes")
        for i, class_name in enumerate(names):
            _text(f"class_names[{i}]", class_name, MAX_CLASS_NAME_CHARS)
        if len(set(names)) != len(names):
            raise ModelMetadataError("class_names must not repeat a name")
        if not 1 <= len(self.strides) <= MAX_LEVELS or not all(
            _is_int(s) and 1 <= s <= MAX_STRIDE for s in self.strides
        ):
            raise ModelMetadataError(
                f"strides must be 1 to {MAX_LEVELS} integers in 1..{MAX_STRIDE}"
            )
        if not _is_int(self.input_size) or not (
            MIN_INPUT_SIZE <= self.input_size <= MAX_INPUT_SIZE
        ):
            raise ModelMetadataError(
                f"input_size must be an integer in {MIN_INPUT_SIZE}..{MAX_INPUT_SIZE}"
            )
        for key, values, positive in (("mean", self.mean, False), ("std", self.std, True)):
            if len(values) != 3 or not all(_is_float(v) and math.isfinite(v) for v in values):
                raise ModelMetadataError(f"{key} must be 3 finite numbers (R, G, B)")
            if positive and not all(v > 0 for v in values):
                raise ModelMetadataError(f"{key} must be 3 numbers > 0 (it divides the pixels)")
        if self.precision not in PRECISIONS:
            raise ModelMetadataError(f"precision must be one of {', '.join(PRECISIONS)}")


def _field(d: dict[str, str], key: str, parse: Callable[[str], Any]) -> Any:
    """`parse(d[key])`; ModelMetadataError naming the key when absent or unparsable."""
    try:
        return parse(d[key])
    except KeyError:
        raise ModelMetadataError(f"ONNX metadata lacks the key {key!r}") from None
    except (ValueError, TypeError) as exc:  # the library's words may quote a huge value
        raise ModelMetadataError(f"ONNX metadata {key!r} is malformed: {_short(str(exc))}"
                                 ) from exc  # fmt: skip


def _json_list(text: str) -> list[Any]:
    value = json.loads(text)
    if not isinstance(value, list):
        raise TypeError("expected a JSON list")
    return value


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_float(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(key: str, value: Any, limit: int) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= limit or not value.isprintable():
        raise ModelMetadataError(f"{key} must be a string of 1 to {limit} printable characters")
