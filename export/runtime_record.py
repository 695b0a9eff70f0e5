"""Which runtime configurations a model file has been validated on: the `runtime_validation`
record in its ONNX metadata (a JSON string), pure Python.

`python -m training.runtimes` writes it: the file is evaluated on a labelled split under each
configuration (ONNX Runtime, OpenVINO f32, OpenVINO bf16, ...) and compared, image by image, with
the reference configuration (paired bootstrap of mAP@0.5). A configuration is *valid* when
(config - reference) is above -tolerance (`rule` "point", the interval stated beside it) or, under
`rule` "interval", when the interval's lower end is (non-inferiority; training/runtimes.py says
why "point" is the default). The service's
`DETECTOR_BACKEND=auto` then chooses by speed among the valid configurations that are installed.

A file without the record (or with a malformed one: it is advice, not the model) is served on
the reference configuration only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

METADATA_KEY = "runtime_validation"
RECORD_VERSION = 1
# The configuration every file is trusted on without a record: what the exporter checks parity
# against (export.exporter.parity) and what the accuracy figures in the model card come from.
REFERENCE = "onnxruntime"
# Configuration names: "<backend>" or "<backend>-<precision hint>".
CONFIGS: tuple[str, ...] = ("onnxruntime", "openvino-f32", "openvino-bf16")
DEFAULT_TOLERANCE = 0.005  # mAP@0.5 a configuration may cost against the reference
RULES = ("point", "interval")  # what `valid` was decided on: the difference or its interval
MAX_RECORD_CHARS = 8192  # a few configurations with their figures; not a document


@dataclass(frozen=True)
class ConfigResult:
    """One configuration's score on the split and its paired difference from the reference."""

    map50: float
    delta: float  # config - reference, mAP@0.5 on the same images
    low: float  # the interval of delta (confidence: RuntimeRecord.confidence)
    high: float
    valid: bool
    note: str = ""  # e.g. "bf16 not supported by this CPU: ran f32"


@dataclass(frozen=True)
class RuntimeRecord:
    reference: str
    tolerance: float
    confidence: float  # of the intervals, e.g. 0.95
    data: str  # the dataset's name (a folder name, not a path of the exporting machine)
    split: str
    images: int
    cpu: str  # the processor the evaluation ran on (bf16 support depends on it)
    date: str  # ISO 8601, UTC
    configs: dict[str, ConfigResult] = field(default_factory=dict)
    rule: str = "point"  # RULES
    version: int = RECORD_VERSION

    def valid_configs(self) -> tuple[str, ...]:
        """The configurations validated within the tolerance, the reference always first."""
        others = [n for n, r in self.configs.items() if r.valid and n != self.reference]
        return (self.reference, *sorted(others))

    def to_json(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        if len(text) > MAX_RECORD_CHARS:
            raise ValueError(f"runtime record is {len(text)} chars (at most {MAX_RECORD_CHARS})")
        return text

    @classmethod
    def from_json(cls, text: str) -> RuntimeRecord:
        """The record; ValueError when it is malformed or of another version."""
        if len(text) > MAX_RECORD_CHARS:
            raise ValueError(f"runtime record longer than {MAX_RECORD_CHARS} chars")
        d = json.loads(text)
        if not isinstance(d, dict) or d.get("version") != RECORD_VERSION:
            raise ValueError(f"runtime record: expected version {RECORD_VERSION}")
        configs = d.get("configs")
        if not isinstance(configs, dict):
            raise ValueError("runtime record: configs must be an object")
        try:
            record = cls(
                reference=str(d["reference"]),
                tolerance=float(d["tolerance"]),
                confidence=float(d["confidence"]),
                data=str(d["data"]),
                split=str(d["split"]),
                images=int(d["images"]),
                cpu=str(d["cpu"]),
                date=str(d["date"]),
                configs={str(k): _config(v) for k, v in configs.items()},
                rule=str(d.get("rule", "point")),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"runtime record: {exc!r}") from None
        if record.reference not in CONFIGS:
            raise ValueError(f"runtime record: unknown reference {record.reference!r}")
        if record.rule not in RULES:
            raise ValueError(f"runtime record: unknown rule {record.rule!r}")
        return record


def _config(d: Any) -> ConfigResult:
    if not isinstance(d, dict):
        raise TypeError("a configuration must be an object")
    return ConfigResult(
        map50=float(d["map50"]), delta=float(d["delta"]), low=float(d["low"]),
        high=float(d["high"]), valid=bool(d["valid"]), note=str(d.get("note", "")),
    )  # fmt: skip


def read_record(strings: dict[str, str]) -> tuple[RuntimeRecord | None, str]:
    """The record in a file's metadata strings, and why there is none ("" when there is one)."""
    text = strings.get(METADATA_KEY)
    if text is None:
        return None, "the file has no runtime_validation record"
    try:
        return RuntimeRecord.from_json(text), ""
    except ValueError as exc:
        return None, f"the file's runtime_validation record is unreadable ({exc})"


def split_config(name: str) -> tuple[str, str | None]:
    """A configuration's (backend, precision hint): "openvino-bf16" -> ("openvino", "bf16"),
    "onnxruntime" -> ("onnxruntime", None)."""
    backend, _, precision = name.partition("-")
    return backend, precision or None
