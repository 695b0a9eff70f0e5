"""Running a detector over a dataset split exactly as the service runs one image.

Each image goes through `export.preprocess.load_image` (bytes, JPEG draft at the input size) +
`preprocess`, the detector's raw outputs through `export.postprocess.postprocess`; boxes are
mapped back to the annotated image size.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from export.inferer import Inferer
from export.metadata import ModelMetadata
from export.postprocess import Detections, PostprocessConfig, postprocess
from export.preprocess import Letterbox, load_image, preprocess

if TYPE_CHECKING:
    from training.data.sample import Sample


def _prepare(sample: Sample, meta: ModelMetadata) -> tuple[np.ndarray, Letterbox]:
    """Read + decode + letterbox one image, like the service; boxes map to the annotation size
    (the JPEG draft decode may be smaller than the annotated image)."""
    image = load_image(Path(sample.image_path).read_bytes(), None, draft_size=meta.input_size)
    tensor, lb = preprocess(image, meta.input_size, meta.mean, meta.std)
    return tensor, lb.for_original_size(sample.width, sample.height)


def run_detector(
    detector: Inferer,
    samples: Sequence[Sample],
    cfg: PostprocessConfig = PostprocessConfig(),
    batch_size: int = 1,
    workers: int = 2,
) -> list[Detections]:
    """Detections per sample, in annotated-image pixels and model class ids.

    Images are decoded in `workers` threads. With batch_size > 1, images of a chunk that share
    the same letterboxed shape are stacked (no extra padding, so the outputs are unchanged).
    """
    meta = detector.metadata
    results: list[Detections] = []

    def flush(chunk: list[tuple[np.ndarray, Letterbox]]) -> None:
        out: list[Detections | None] = [None] * len(chunk)
        shapes: dict[tuple[int, ...], list[int]] = {}
        for i, item in enumerate(chunk):
            shapes.setdefault(item[0].shape, []).append(i)
        for shape, idx in shapes.items():
            cls, box, ctr = detector.infer(np.concatenate([chunk[i][0] for i in idx]))
            for j, i in enumerate(idx):
                lb = chunk[i][1]
                out[i] = postprocess(cls[j], box[j], ctr[j], shape[2:], meta.strides, lb, cfg)
        results.extend(d for d in out if d is not None)
        chunk.clear()

    chunk: list[tuple[np.ndarray, Letterbox]] = []
    batch_size = max(1, batch_size)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        # Bounded read-ahead: at most one batch plus 2 * workers images in memory.
        pending: deque[Future[tuple[np.ndarray, Letterbox]]] = deque()
        it = iter(samples)
        for sample in itertools.islice(it, batch_size + 2 * workers):
            pending.append(pool.submit(_prepare, sample, meta))
        while pending:
            chunk.append(pending.popleft().result())
            for sample in itertools.islice(it, 1):
                pending.append(pool.submit(_prepare, sample, meta))
            if len(chunk) >= batch_size:
                flush(chunk)
        if chunk:
            flush(chunk)
    return results
