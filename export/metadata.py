"""The metadata this project writes into ONNX files (all values are strings), pure Python."""

from __future__ import annotations

import json
from dataclasses import dataclass

from export.errors import ModelMetadataError

FORMAT_VERSION = "1"
INPUT_NAME = "images"
OUTPUT_NAMES: tuple[str, str, str] = ("cls_logits", "box_distances", "centerness_logits")


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
        try:
            return cls(
                name=d["name"],
                version=d["version"],
                preset=d["preset"],
                class_names=tuple(json.loads(d["class_names"])),
                strides=tuple(int(s) for s in json.loads(d["strides"])),
                input_size=int(d["input_size"]),
                mean=tuple(float(v) for v in json.loads(d["mean"])),  # type: ignore[arg-type]
                std=tuple(float(v) for v in json.loads(d["std"])),  # type: ignore[arg-type]
                precision=d.get("precision", "fp32"),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelMetadataError(f"ONNX metadata is missing or malformed: {exc!r}") from exc
