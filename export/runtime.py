"""The image -> detections pipeline (decode, letterbox, one model call, decode + NMS) around a
model runtime, and its ONNX Runtime implementation. NumPy + onnxruntime, no torch. Other
runtimes (`export.openvino_runtime`) subclass `ImageDetector` and supply `infer`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from export.inferer import Outputs
from export.metadata import INPUT_NAME, OUTPUT_NAMES, ModelMetadata
from export.postprocess import Detections, PostprocessConfig, postprocess
from export.preprocess import DEFAULT_MAX_PIXELS, decode_image, preprocess


def make_session(
    path: str | Path, threads: int | None = None, spinning: bool = True
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
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@dataclass
class DetectionResult:
    detections: Detections
    width: int
    height: int
    timings_s: dict[str, float] = field(default_factory=dict)


class ImageDetector:
    """The full image -> detections pipeline around `infer`, which subclasses supply.

    `infer` must be safe to call from several threads at once (the service runs
    `DETECTOR_WORKERS` jobs concurrently on one detector).
    """

    metadata: ModelMetadata
    backend: str = "none"

    def infer(self, tensor: np.ndarray) -> Outputs:
        """(N, 3, H, W) float32 -> raw outputs (N, P, C), (N, P, 4), (N, P, 1)."""
        raise NotImplementedError

    def detect_image(
        self,
        image: Image.Image,
        cfg: PostprocessConfig = PostprocessConfig(),
        original_size: tuple[int, int] | None = None,
    ) -> DetectionResult:
        """`original_size`: when `image` is a reduced decode (JPEG draft) of a larger original,
        its (width, height): boxes and the reported size are then in original pixels."""
        m = self.metadata
        t0 = time.perf_counter()
        tensor, lb = preprocess(image, m.input_size, m.mean, m.std)
        if original_size is not None and original_size != image.size:
            lb = lb.for_original_size(*original_size)
        t1 = time.perf_counter()
        cls, box, ctr = self.infer(tensor)
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
    ) -> DetectionResult:
        t0 = time.perf_counter()
        image, original_size = decode_image(data, max_pixels, draft_size=self.metadata.input_size)
        t1 = time.perf_counter()
        result = self.detect_image(image, cfg, original_size)
        result.timings_s = {"decode": t1 - t0, **result.timings_s}
        return result


class OnnxDetector(ImageDetector):
    """An exported FCOS ONNX file on ONNX Runtime (CPU). One session; concurrent `infer` calls
    share its intra-op thread pool (each caller thread works on its own run)."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, spinning: bool = True) -> None:
        self.path = Path(path)
        self.session = make_session(self.path, threads, spinning)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = ModelMetadata.from_strings(meta)

    def run(self, tensor: np.ndarray) -> Outputs:
        """One session run: (N, 3, H, W) float32 -> (N, P, C), (N, P, 4), (N, P, 1)."""
        cls, box, ctr = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: tensor})
        return cls, box, ctr

    def infer(self, tensor: np.ndarray) -> Outputs:
        return self.run(tensor)
