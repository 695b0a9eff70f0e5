"""Running a detector over a dataset split exactly as the service runs one image.

Each image goes through `export.preprocess.load_image` (bytes, JPEG draft at the input size) +
`preprocess`, the detector's raw outputs through `export.postprocess.postprocess`; boxes are
mapped back to the annotated image size.

With `tile` (export/tiling.py, the service's `tile`): images whose header size asks for tiles are
decoded at full resolution and run whole plus tile by tile, the boxes merged, exactly as
`ImageDetector.detect_bytes(..., tile=...)`; the others go through the untiled path above.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from export.inferer import Inferer
from export.metadata import ModelMetadata
from export.postprocess import Detections, PostprocessConfig, postprocess
from export.preprocess import Letterbox, load_image, preprocess
from export.tile_merge import DEFAULT_MERGE, merge
from export.tiling import DEFAULT_MAX_TILES, Tile, image_size, plan_tiles, run_tiles

if TYPE_CHECKING:
    from training.data.sample import Sample


def _prepare(sample: Sample, meta: ModelMetadata) -> tuple[np.ndarray, Letterbox]:
    """Read + decode + letterbox one image, like the service; boxes map to the annotation size
    (the JPEG draft decode may be smaller than the annotated image)."""
    image = load_image(Path(sample.image_path).read_bytes(), None, draft_size=meta.input_size)
    tensor, lb = preprocess(image, meta.input_size, meta.mean, meta.std)
    return tensor, lb.for_original_size(sample.width, sample.height)


def _decode_tiled(
    sample: Sample, meta: ModelMetadata, tile: Tile, max_tiles: int
) -> tuple[np.ndarray, Letterbox] | Image.Image:
    """`_prepare`'s output for an image the tiling leaves whole; else the full-resolution image
    (decided from the header size, as ImageDetector.detect_bytes does)."""
    data = Path(sample.image_path).read_bytes()
    header = image_size(data)
    if header is None or not plan_tiles(*header, meta.input_size, tile, max_tiles=max_tiles):
        return _prepare(sample, meta)
    return load_image(data, None)


def _detect_tiled(
    detector: Inferer,
    image: Image.Image,
    sample: Sample,
    cfg: PostprocessConfig,
    tile: Tile,
    max_tiles: int,
    tile_merge: str = DEFAULT_MERGE,
) -> Detections:
    """The whole image + its tiles, merged (`tile_merge`: export.tiling.merge's rule); boxes in
    annotated-image pixels."""
    meta = detector.metadata
    tensor, lb = preprocess(image, meta.input_size, meta.mean, meta.std)
    cls, box, ctr = detector.infer(tensor)
    full = postprocess(cls[0], box[0], ctr[0], tensor.shape[2:], meta.strides, lb, cfg)
    windows = plan_tiles(image.width, image.height, meta.input_size, tile, max_tiles=max_tiles)
    parts = run_tiles(image, windows, detector.infer, meta, cfg, batch=True)
    dets = merge(full, parts, cfg.nms_iou, cfg.max_detections, image.size, meta.input_size,
                 tile_merge)
    if image.size != (sample.width, sample.height):  # annotation size differs from the file's
        sx, sy = sample.width / image.width, sample.height / image.height
        boxes = dets.boxes * np.asarray([sx, sy, sx, sy], dtype=np.float32)
        dets = Detections(boxes.astype(np.float32), dets.scores, dets.class_ids)
    return dets


def run_detector(
    detector: Inferer,
    samples: Sequence[Sample],
    cfg: PostprocessConfig = PostprocessConfig(),
    batch_size: int = 1,
    workers: int = 2,
    tile: Tile = "off",
    max_tiles: int = DEFAULT_MAX_TILES,
    tile_merge: str = DEFAULT_MERGE,
) -> list[Detections]:
    """Detections per sample, in annotated-image pixels and model class ids.

    Images are decoded in `workers` threads. With batch_size > 1, images of a chunk that share
    the same letterboxed shape are stacked (no extra padding, so the outputs are unchanged).
    `tile` != "off": tiled inference (module docstring), one image per model call set
    (batch_size is then ignored), tiles merged by the rule `tile_merge` (export.tiling.merge).
    """
    meta = detector.metadata
    if tile != "off":
        return _run_tiled(detector, samples, cfg, workers, tile, max_tiles, tile_merge)
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


def _run_tiled(
    detector: Inferer,
    samples: Sequence[Sample],
    cfg: PostprocessConfig,
    workers: int,
    tile: Tile,
    max_tiles: int,
    tile_merge: str = DEFAULT_MERGE,
) -> list[Detections]:
    """`run_detector` with tiling: decodes read ahead in `workers` threads, model calls here."""
    meta = detector.metadata
    results: list[Detections] = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending: deque[Future[tuple[np.ndarray, Letterbox] | Image.Image]] = deque()
        it = iter(samples)
        queued: deque[Sample] = deque()
        for sample in itertools.islice(it, 1 + 2 * workers):
            pending.append(pool.submit(_decode_tiled, sample, meta, tile, max_tiles))
            queued.append(sample)
        while pending:
            item, sample = pending.popleft().result(), queued.popleft()
            for nxt in itertools.islice(it, 1):
                pending.append(pool.submit(_decode_tiled, nxt, meta, tile, max_tiles))
                queued.append(nxt)
            if isinstance(item, Image.Image):
                results.append(_detect_tiled(detector, item, sample, cfg, tile, max_tiles,
                                             tile_merge))
                continue
            tensor, lb = item
            cls, box, ctr = detector.infer(tensor)
            results.append(
                postprocess(cls[0], box[0], ctr[0], tensor.shape[2:], meta.strides, lb, cfg)
            )
    return results
