"""The image -> detections pipeline (decode, letterbox, one model call, decode + NMS) around a
model runtime, and its ONNX Runtime implementation. NumPy + onnxruntime, no torch. Other
runtimes (`export.openvino_runtime`) subclass `ImageDetector` and supply `infer`."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from PIL import Image

from export.decode_budget import check_deadline
from export.inferer import Outputs
from export.metadata import INPUT_NAME, OUTPUT_NAMES, ModelMetadata
from export.postprocess import Detections, PostprocessConfig, postprocess
from export.preprocess import DEFAULT_MAX_PIXELS, decode_image, preprocess
from export.spin_policy import SpinPolicy
from export.tile_merge import merge
from export.tiling import (
    DEFAULT_MAX_TILES,
    Tile,
    image_size,
    parse_tile,
    plan_tiles,
    run_tiles,
)

Spinning = bool | Literal["auto"]  # auto: spin while the machine is quiet (SpinPolicy)


def make_session(
    path: str | Path, threads: int | None = None, spinning: bool = True, profiling: bool = False
) -> ort.InferenceSession:
    """A CPU session with full graph optimisation and intra-op threads = cores.

    `spinning` (default): intra-op threads busy-wait for work inside a run (ORT's default)
    but stop as soon as the run returns (`session.force_spinning_stop`), so they do not burn
    the CPU that HTTP handling, decoding or a second process needs between runs. Measured on
    the 2-core target (bench/RESULTS.md): with spinning, end-to-end /detect throughput was
    ~10% higher on an otherwise idle machine; with another busy process on the same cores,
    `spinning=False` made INT8 inference ~1.4x faster instead.
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if spinning:
        opts.add_session_config_entry("session.force_spinning_stop", "1")
    opts.enable_profiling = profiling  # ORT's per-kernel trace (bench.op_profile)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@dataclass
class DetectionResult:
    detections: Detections
    width: int
    height: int
    timings_s: dict[str, float] = field(default_factory=dict)
    tiles: int = 0  # model runs on tiles (export.tiling), 0 when the image was not tiled


class ImageDetector:
    """The full image -> detections pipeline around `infer`, which subclasses supply.

    `infer` must be safe to call from several threads at once (the service runs
    `DETECTOR_WORKERS` jobs concurrently on one detector). While another pipeline call is
    running on the same detector, the model call goes to `infer_shared` instead: runtimes that
    hold a narrower engine (fewer threads) for that case override it, so that one request alone
    gets every thread and concurrent requests do not oversubscribe the cores.
    """

    metadata: ModelMetadata
    backend: str = "none"
    _occupancy_lock = threading.Lock()  # guards `_active` (tiny critical sections)
    _active = 0  # pipeline calls running on this detector now
    # Tiles through the model in one batched call (True) or one call each, with the deadline
    # checked between them (False). Batched is faster on ONNX Runtime CPU (a 1280x1280 JPEG,
    # default.onnx, 2 shared cores, p50 of 5: 2x2 tiles 457 vs 549 ms, auto's 3x3 941 vs
    # 1069 ms end to end); the deadline is then checked before the one tile call.
    batch_tiles = True

    def infer(self, tensor: np.ndarray) -> Outputs:
        """(N, 3, H, W) float32 -> raw outputs (N, P, C), (N, P, 4), (N, P, 1)."""
        raise NotImplementedError

    def infer_shared(self, tensor: np.ndarray) -> Outputs:
        """`infer` while other pipeline calls run at once (default: the same engine)."""
        return self.infer(tensor)

    def pipelines(self, workers: int) -> int:
        """How many pipeline calls to run at once where `workers` model calls share the
        cores (default: `workers`; a runtime that queues calls beyond its engines itself may
        want one more to decode while they compute)."""
        return workers

    def prepare_shared(self, shape: tuple[int, int, int, int]) -> None:
        """Make `infer_shared` ready for (N, 3, H, W) tensors now, not on first use (default:
        nothing to prepare)."""

    @contextmanager
    def _occupied(self) -> Iterator[None]:
        with self._occupancy_lock:
            self._active += 1
        try:
            yield
        finally:
            with self._occupancy_lock:
                self._active -= 1

    def _infer_now(self, tensor: np.ndarray) -> Outputs:
        """`infer` when this is the only pipeline call running, else `infer_shared`."""
        return self.infer(tensor) if self._active <= 1 else self.infer_shared(tensor)

    def detect_image(
        self,
        image: Image.Image,
        cfg: PostprocessConfig = PostprocessConfig(),
        original_size: tuple[int, int] | None = None,
    ) -> DetectionResult:
        """`original_size`: when `image` is a reduced decode (JPEG draft) of a larger original,
        its (width, height): boxes and the reported size are then in original pixels."""
        with self._occupied():
            return self._detect_image(image, cfg, original_size)

    def _detect_image(
        self,
        image: Image.Image,
        cfg: PostprocessConfig,
        original_size: tuple[int, int] | None,
        deadline: float | None = None,
    ) -> DetectionResult:
        m = self.metadata
        t0 = time.perf_counter()
        tensor, lb = preprocess(image, m.input_size, m.mean, m.std)
        if original_size is not None and original_size != image.size:
            lb = lb.for_original_size(*original_size)
        check_deadline(deadline)  # the model call is the last stage worth stopping before
        t1 = time.perf_counter()
        cls, box, ctr = self._infer_now(tensor)
        t2 = time.perf_counter()
        dets = postprocess(cls[0], box[0], ctr[0], tensor.shape[2:], m.strides, lb, cfg)
        t3 = time.perf_counter()
        timings = {"preprocess": t1 - t0, "inference": t2 - t1, "postprocess": t3 - t2}
        return DetectionResult(dets, lb.orig_width, lb.orig_height, timings)

    def detect_bytes(
        self,
        data: bytes,
        cfg: PostprocessConfig = PostprocessConfig(),
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        deadline: float | None = None,
        tile: Tile = "off",
        max_tiles: int = DEFAULT_MAX_TILES,
    ) -> DetectionResult:
        """Decode `data` and detect. `deadline` (time.monotonic()): past it, the work stops at
        the next cancellation point (a decoder read, a stage boundary, a tile) with
        DeadlinePassedError, so a request that has already been answered 504 stops costing CPU.

        `tile` ("off", "auto" or a grid size N, export.tiling.plan_tiles; at most `max_tiles`
        tiles): whether the header size asks for tiles is decided before decoding, so an
        untiled image keeps the reduced (JPEG draft) decode; a tiled one is decoded at full
        resolution, run whole as untiled, then tile by tile, and the boxes merged
        (export.tiling.merge). `result.tiles` counts the tile runs, `timings_s["tiles"]` their
        time (preprocess + model + postprocess).
        """
        tile = parse_tile(tile)
        size = self.metadata.input_size
        tiled = False
        if tile != "off":
            header = image_size(data)
            tiled = header is not None and bool(
                plan_tiles(*header, size, tile, max_tiles=max_tiles)
            )
        with self._occupied():
            t0 = time.perf_counter()
            image, original_size = decode_image(data, max_pixels, None if tiled else size, deadline)
            check_deadline(deadline)
            t1 = time.perf_counter()
            result = self._detect_image(image, cfg, original_size, deadline)
            windows = (
                plan_tiles(image.width, image.height, size, tile, max_tiles=max_tiles)
                if tiled
                else []
            )
            if windows:
                t2 = time.perf_counter()
                parts = run_tiles(image, windows, self._infer_now, self.metadata, cfg, deadline,
                                  batch=self.batch_tiles)  # fmt: skip
                result.detections = merge(result.detections, parts, cfg.nms_iou,
                                          cfg.max_detections, image.size, size)  # fmt: skip
                result.tiles = len(windows)
                result.timings_s["tiles"] = time.perf_counter() - t2
        result.timings_s = {"decode": t1 - t0, **result.timings_s}
        return result


class OnnxDetector(ImageDetector):
    """An exported FCOS ONNX file on ONNX Runtime (CPU).

    One session with `threads` intra-op threads serves a request that runs alone. With
    `shared_threads` (fewer), a second session with that many threads serves the model calls
    made while other requests run at once (`infer_shared`): N workers x `shared_threads` then
    fill the cores without the pool threads of concurrent runs competing for them. Sessions
    are thread-safe; concurrent runs on one session each work on their caller's thread.

    `spinning`: True / False for the lone-request session's pool threads; "auto" holds both a
    spinning and a non-spinning session and lets `SpinPolicy` pick per run (spin while runs
    keep their quiet speed). Shared sessions never spin.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        spinning: Spinning = True,
        shared_threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        threads = threads or (os.cpu_count() or 1)
        adaptive = spinning == "auto" and threads > 1  # one thread has no pool to spin
        self.session = make_session(self.path, threads, spinning is True or adaptive)
        self.spin_policy = SpinPolicy() if adaptive else None
        self.calm_session = self.session
        if adaptive:
            self.calm_session = make_session(self.path, threads, spinning=False)
        self.shared_session = self.calm_session
        if shared_threads is not None and shared_threads < threads:
            self.shared_session = make_session(self.path, shared_threads, spinning=False)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = ModelMetadata.from_strings(meta)

    def run(self, tensor: np.ndarray, session: ort.InferenceSession | None = None) -> Outputs:
        """One run of `session` (default: the whole-machine one): (N, 3, H, W) float32 ->
        (N, P, C), (N, P, 4), (N, P, 1)."""
        cls, box, ctr = (session or self.session).run(list(OUTPUT_NAMES), {INPUT_NAME: tensor})
        return cls, box, ctr

    def infer(self, tensor: np.ndarray) -> Outputs:
        policy = self.spin_policy
        if policy is None:
            return self.run(tensor)
        spin = policy.spin()
        t0 = time.perf_counter()
        out = self.run(tensor, self.session if spin else self.calm_session)
        policy.record(tensor.shape, spin, time.perf_counter() - t0)
        return out

    def infer_shared(self, tensor: np.ndarray) -> Outputs:
        return self.run(tensor, self.shared_session)
