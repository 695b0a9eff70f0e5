"""An exported FCOS ONNX file on OpenVINO (CPU), behind the same `ImageDetector` pipeline as
ONNX Runtime. NumPy + openvino only (the optional `openvino` extra), no torch, no onnx.

The ONNX file is read once (`Core.read_model`); its project metadata comes from the same read:
OpenVINO's ONNX front end copies the file's `metadata_props` into the model's
`rt_info["framework"]` (the very key/value strings ONNX Runtime's `custom_metadata_map` gives).
Only when that is absent (an older OpenVINO) is an ONNX Runtime session created, with graph
optimisation off, just to read them.

The letterbox yields a small finite set of input shapes, so the model is compiled once per
(N, 3, H, W) shape, reshaped to that static shape first (faster than one dynamic-shape
compile: 12.0 vs 15.0 ms per 1x3x288x384 call measured here, bf16, 2 threads), lazily on first
use and cached; a compile takes ~0.6-0.9 s (the first request of each shape). Each one holds
its own prepared weights, so at most `max_shapes` are kept; rarer shapes share one
dynamic-shape model. Each calling
thread gets its own infer request per shape; the compiled model (one stream) runs concurrent
requests one at a time, each on all `threads`.

CPU pinning is off: measured on the 2-core machine (default.onnx, 1x3x288x384, bf16, 2 threads)
it changes nothing on idle cores (~103 req/s either way, one or two callers) but with a busy
process on the same cores pinned threads fell to 17-20 req/s against 22-44 unpinned.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from export.inferer import Outputs
from export.metadata import INPUT_NAME, OUTPUT_NAMES, ModelMetadata
from export.runtime import ImageDetector

if TYPE_CHECKING:
    import openvino

PRECISIONS: dict[str, str] = {"bf16": "bf16", "f32": "f32"}  # our name -> OpenVINO's hint
INSTALL_HINT = "pip install 'fcos-detector[openvino]'"
Shape = tuple[int, int, int, int]  # (N, 3, H, W)
# Static-shape compiled models kept (~60 MiB each for the bundled model; measured RSS growth
# per shape): the common photo aspect ratios; rarer shapes share one dynamic-shape model.
MAX_STATIC_SHAPES = 8


def import_openvino() -> Any:
    """The `openvino` module, or ImportError saying how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise ImportError(f"the OpenVINO backend needs openvino: {INSTALL_HINT}") from exc
    return openvino


def metadata_strings(model: openvino.Model, path: str | Path) -> dict[str, str]:
    """The ONNX file's `metadata_props` as strings: from OpenVINO's rt_info when its ONNX front
    end put them there, else read through an (unoptimised) ONNX Runtime session."""
    rt_info = model.get_rt_info()
    if "framework" in rt_info:
        keys = model.get_rt_info()["framework"].keys()
        strings = {k: model.get_rt_info(["framework", k]).astype(str) for k in keys}
        if "format_version" in strings:
            return strings
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)


class OpenVinoDetector(ImageDetector):
    """An exported FCOS ONNX file (fp32 or INT8 QDQ) on OpenVINO's CPU plugin.

    `threads`: inference threads (None: every core). `precision`: the inference precision hint
    for floating-point layers, "bf16" (default; needs a CPU with bf16 support, else OpenVINO
    runs f32) or "f32". `pinning`: OpenVINO's ENABLE_CPU_PINNING; off by default, as the
    service shares its cores with HTTP, decoding and other worker threads. `max_shapes`: at
    most this many static-shape compiled models (each holds its own copy of the prepared
    weights: ~60 MiB for the bundled model); further shapes share one dynamic-shape model.
    `infer` is thread-safe: one infer request per (thread, compiled model).
    """

    backend = "openvino"

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        precision: str = "bf16",
        pinning: bool = False,
        max_shapes: int = MAX_STATIC_SHAPES,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of bf16, f32")
        ov = import_openvino()
        self.path = Path(path)
        self.precision = precision
        self._core = ov.Core()
        self._model = self._core.read_model(str(self.path))
        self.metadata = ModelMetadata.from_strings(metadata_strings(self._model, self.path))
        self.config: dict[str, Any] = {
            "INFERENCE_NUM_THREADS": threads or (os.cpu_count() or 1),
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
            "ENABLE_CPU_PINNING": pinning,
        }
        self.max_shapes = max_shapes
        self._compiled: dict[Shape, openvino.CompiledModel] = {}
        self._dynamic: openvino.CompiledModel | None = None  # shapes beyond max_shapes
        self._lock = threading.Lock()
        self._local = threading.local()  # .requests: {Shape or None (dynamic): InferRequest}

    @property
    def compiled_shapes(self) -> list[Shape]:
        """The input shapes compiled statically so far, in compile order."""
        return list(self._compiled)

    @property
    def uses_dynamic(self) -> bool:
        """Whether shapes beyond `max_shapes` were met (and the dynamic model compiled)."""
        return self._dynamic is not None

    def compiled_model(self, shape: Shape) -> tuple[Shape | None, openvino.CompiledModel]:
        """(cache key, compiled model) for input `shape`: its own static-shape model, compiled
        once under a lock while fewer than `max_shapes` exist; else (None, the one
        dynamic-shape model)."""
        compiled = self._compiled.get(shape)
        if compiled is not None:
            return shape, compiled
        with self._lock:
            compiled = self._compiled.get(shape)
            if compiled is not None:
                return shape, compiled
            if len(self._compiled) < self.max_shapes:
                model = self._model.clone()
                model.reshape({INPUT_NAME: list(shape)})
                compiled = self._compiled[shape] = self._core.compile_model(
                    model, "CPU", self.config
                )
                return shape, compiled
            if self._dynamic is None:
                self._dynamic = self._core.compile_model(self._model, "CPU", self.config)
            return None, self._dynamic

    def _request(self, shape: Shape) -> openvino.InferRequest:
        """This thread's infer request for `shape` (never shared across threads)."""
        requests: dict[Shape | None, openvino.InferRequest] | None = getattr(
            self._local, "requests", None
        )
        if requests is None:
            requests = self._local.requests = {}
        request = requests.get(shape)
        if request is None:
            key, compiled = self.compiled_model(shape)
            request = requests.get(key)
            if request is None:
                request = requests[key] = compiled.create_infer_request()
        return request

    def infer(self, tensor: np.ndarray) -> Outputs:
        """(N, 3, H, W) float32 -> (N, P, C), (N, P, 4), (N, P, 1) float32 (fresh arrays)."""
        if tensor.ndim != 4 or tensor.shape[1] != 3:
            raise ValueError(f"expected an (N, 3, H, W) tensor, got shape {tensor.shape}")
        x = np.ascontiguousarray(tensor, dtype=np.float32)  # (N, 3, H, W)
        shape: Shape = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        request = self._request(shape)
        request.infer({INPUT_NAME: x}, share_inputs=True)
        # Copied out: the request's output buffers are reused by its next call.
        cls, box, ctr = (
            np.array(request.get_tensor(name).data, dtype=np.float32, copy=True)
            for name in OUTPUT_NAMES
        )
        return cls, box, ctr
