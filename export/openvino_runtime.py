"""An exported FCOS ONNX file on OpenVINO (CPU), behind the same `ImageDetector` pipeline as
ONNX Runtime. NumPy + openvino only (in the serving install), no torch, no onnx.

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
thread gets its own infer request per shape. A call alone runs on a one-stream model with all
`threads`; with `shared_threads`, calls made while others run (`infer_shared`, as ONNX Runtime's
narrower session) go to a second model per shape with threads // shared_threads streams, so the
concurrent calls run side by side instead of one at a time.

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
        shared_threads: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of bf16, f32")
        ov = import_openvino()
        self.path = Path(path)
        self.precision = precision
        self._core = ov.Core()
        self._tensor = ov.Tensor
        self._model = self._core.read_model(str(self.path))
        self.metadata = ModelMetadata.from_strings(metadata_strings(self._model, self.path))
        threads = threads or (os.cpu_count() or 1)
        common = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision],
                  "ENABLE_CPU_PINNING": pinning}  # fmt: skip
        self.config: dict[str, Any] = {
            "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
            **common,
        }  # fmt: skip
        # Calls made while others run (`infer_shared`): one stream per concurrent caller, each
        # on `shared_threads` of the same cores. A one-stream model runs concurrent requests one
        # at a time: measured here (default.onnx, 1x3x288x384, bf16, 2 threads, 2 callers) 45.6
        # calls/s on one stream against 52.4 on two (f32: 37.0 vs 40.4).
        self.streams = threads // shared_threads if shared_threads else 1
        self.shared_config: dict[str, Any] | None = None
        if self.streams > 1:
            self.shared_config = {"INFERENCE_NUM_THREADS": threads,
                                  "NUM_STREAMS": self.streams, **common}  # fmt: skip
        self.max_shapes = max_shapes
        # (kind, shape) -> compiled model; kind "lone" (self.config) or "shared" (shared_config)
        self._compiled: dict[tuple[str, Shape], openvino.CompiledModel] = {}
        self._dynamic: dict[str, openvino.CompiledModel] = {}  # shapes beyond max_shapes
        self._lock = threading.Lock()
        self._local = threading.local()  # .requests: {(kind, Shape or None): InferRequest}

    @property
    def compiled_shapes(self) -> list[Shape]:
        """The input shapes compiled statically so far for lone calls, in compile order."""
        return [shape for kind, shape in self._compiled if kind == "lone"]

    @property
    def shared_shapes(self) -> list[Shape]:
        """The input shapes compiled for concurrent calls (multi-stream) so far."""
        return [shape for kind, shape in self._compiled if kind == "shared"]

    @property
    def uses_dynamic(self) -> bool:
        """Whether shapes beyond `max_shapes` were met (and the dynamic model compiled)."""
        return bool(self._dynamic)

    def compiled_model(
        self, shape: Shape, kind: str = "lone"
    ) -> tuple[tuple[str, Shape | None], openvino.CompiledModel]:
        """(cache key, compiled model) for input `shape` and call `kind`: its own static-shape
        model, compiled once under a lock while fewer than `max_shapes` of that kind exist;
        else the kind's one dynamic-shape model (key (kind, None)). Shared models are compiled on
        the first concurrent call of a shape (`infer_shared`), so memory goes only to the shapes
        that meet concurrency (~70-100 MiB each for the bundled model: RSS growth per compiled
        shape measured here)."""
        key = (kind, shape)
        compiled = self._compiled.get(key)
        if compiled is not None:
            return key, compiled
        config = self.shared_config if kind == "shared" else self.config
        assert config is not None
        with self._lock:
            compiled = self._compiled.get(key)
            if compiled is not None:
                return key, compiled
            if sum(k == kind for k, _ in self._compiled) < self.max_shapes:
                model = self._model.clone()
                model.reshape({INPUT_NAME: list(shape)})
                compiled = self._compiled[key] = self._core.compile_model(model, "CPU", config)
                return key, compiled
            if kind not in self._dynamic:
                self._dynamic[kind] = self._core.compile_model(self._model, "CPU", config)
            return (kind, None), self._dynamic[kind]

    def _request(self, shape: Shape, kind: str = "lone") -> openvino.InferRequest:
        """This thread's infer request for `shape` and `kind` (never shared across threads)."""
        requests: dict[tuple[str, Shape | None], openvino.InferRequest] | None = getattr(
            self._local, "requests", None
        )
        if requests is None:
            requests = self._local.requests = {}
        request = requests.get((kind, shape))
        if request is None:
            key, compiled = self.compiled_model(shape, kind)
            request = requests.get(key)
            if request is None:
                request = requests[key] = compiled.create_infer_request()
        return request

    def infer(self, tensor: np.ndarray) -> Outputs:
        """(N, 3, H, W) float32 -> (N, P, C), (N, P, 4), (N, P, 1) float32 (fresh arrays)."""
        return self._run(tensor, "lone")

    def pipelines(self, workers: int) -> int:
        """With several streams, one pipeline more than `workers`: a call beyond the streams
        waits in OpenVINO's own queue (no thread of ours busy, no GIL to win back), so the
        extra request's decode and letterbox overlap every stream's computing instead of
        leaving a core idle between one stream's calls (8 clients on 2 cores: idle CPU ~5% ->
        under 1%, +3-7% req/s; ONNX Runtime, whose calls run on the caller's thread, only
        oversubscribed the cores: bench/RESULTS.md, the runtime section)."""
        return workers + 1 if self.streams > 1 else workers

    def infer_shared(self, tensor: np.ndarray) -> Outputs:
        """`infer` while other calls run: on the shape's multi-stream model (with
        `shared_threads`), else on the one-stream model."""
        return self._run(tensor, "shared" if self._shared_ready(tensor.shape) else "lone")

    def prepare_shared(self, shape: tuple[int, int, int, int]) -> None:
        """Compile `shape`'s multi-stream model now (with `shared_threads`)."""
        if self.shared_config is not None:
            self.compiled_model(shape, "shared")

    def _shared_ready(self, shape: tuple[int, ...]) -> bool:
        """Whether `shape` has (or now gets) its multi-stream model: compiled on the first
        concurrent call of the shape, in that call (~1 s, once; not on a short-lived thread
        of its own: an OpenVINO compile on a thread that then exits left the process to crash
        after a later fork, e.g. a DataLoader's), unless `max_shapes` shared models exist
        (rarer shapes then stay on the one-stream models)."""
        if self.shared_config is None or len(shape) != 4:
            return False
        key = ("shared", (shape[0], shape[1], shape[2], shape[3]))
        if key in self._compiled:
            return True
        if len(self.shared_shapes) >= self.max_shapes:
            return False
        self.compiled_model(key[1], "shared")
        return True

    def _run(self, tensor: np.ndarray, kind: str) -> Outputs:
        if tensor.ndim != 4 or tensor.shape[1] != 3:
            raise ValueError(f"expected an (N, 3, H, W) tensor, got shape {tensor.shape}")
        x = np.ascontiguousarray(tensor, dtype=np.float32)  # (N, 3, H, W)
        shape: Shape = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        request = self._request(shape, kind)
        # The input tensor wraps `x` (no copy); start + wait rather than `infer`, which would
        # also build a dict of copied outputs: 0.28-0.35 against 0.41-0.45 ms of the caller's
        # CPU per call (measured here, 1x3x288x384 on the two-stream model, copies included).
        request.set_tensor(INPUT_NAME, self._tensor(x, shared_memory=True))
        request.start_async()
        request.wait()
        # Copied out: the request's output buffers are reused by its next call.
        cls, box, ctr = (
            np.array(request.get_tensor(name).data, dtype=np.float32, copy=True)
            for name in OUTPUT_NAMES
        )
        return cls, box, ctr
