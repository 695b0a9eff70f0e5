"""Choosing the runtime that executes an exported ONNX file: ONNX Runtime or OpenVINO (both in
the serving install; OpenVINO may be missing from other installs), behind the same
`ImageDetector` pipeline, so the NumPy pre- and post-processing is the same whichever runs the
model. The service's `DETECTOR_BACKEND=auto` measures instead (export.runtime_choice)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal, get_args

from export.runtime import ImageDetector, OnnxDetector, Spinning

Backend = Literal["auto", "onnxruntime", "openvino"]
BACKENDS: tuple[str, ...] = get_args(Backend)
Precision = Literal["bf16", "f32"]


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def resolve_backend(backend: str) -> str:
    """`auto` -> `openvino` when it is installed, else `onnxruntime`; others as given (the
    command-line tools' `auto`; the service times the candidates: export.runtime_choice)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "openvino" if openvino_installed() else "onnxruntime"
    return backend


def load_detector(
    path: str | Path,
    backend: str = "onnxruntime",
    threads: int | None = None,
    spinning: Spinning = True,
    precision: Precision = "bf16",
    shared_threads: int | None = None,
) -> ImageDetector:
    """The detector for an exported ONNX file on the chosen runtime.

    `threads`: intra-op threads (None: every core). `spinning`: ONNX Runtime's busy-wait of
    idle pool threads, or "auto" (while runs keep their quiet speed; OpenVINO ignores it).
    `precision`: OpenVINO's inference precision hint for the layers the INT8 file leaves in
    floating point (ONNX Runtime ignores it).
    `shared_threads`: threads of the model calls made while other requests run on the same
    detector (None: `threads`), see `ImageDetector`.
    """
    chosen = resolve_backend(backend)
    if chosen == "openvino":
        from export.openvino_runtime import OpenVinoDetector

        return OpenVinoDetector(path, threads=threads, precision=precision,
                                shared_threads=shared_threads)  # fmt: skip
    return OnnxDetector(path, threads=threads, spinning=spinning, shared_threads=shared_threads)
