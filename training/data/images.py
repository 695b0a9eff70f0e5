"""Image decoding for training (Pillow, no EXIF rotation: annotations refer to stored pixels)
and the optional in-memory cache, built with a thread pool (Pillow decodes without the GIL)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from export.preprocess import letterbox_size
from training.data.errors import DatasetError

logger = logging.getLogger(__name__)


def decode_rgb(
    path: Path, expected_size: tuple[int, int], max_side: int | None = None, draft: bool = False
) -> np.ndarray:
    """Decode `path` into an HxWx3 uint8 RGB array.

    expected_size: the annotated (width, height); a different stored size raises DatasetError
        (the boxes would not fit the pixels).
    max_side: if the longer side exceeds it, resize (bilinear) to the sizes that
        `export.preprocess.letterbox_size(w, h, max_side)` gives. The caller rescales boxes by
        array size / annotated size.
    draft: let the JPEG decoder downscale by 1/2..1/8 first when the image is much larger
        (faster, but not pixel-identical to a plain decode + resize; training only).
    """
    try:
        with Image.open(path) as img:
            if img.size != tuple(expected_size):
                raise DatasetError(
                    f"{path}: image is {img.size[0]}x{img.size[1]} but annotated as "
                    f"{expected_size[0]}x{expected_size[1]}"
                )
            if draft and max_side and img.format == "JPEG" and max(img.size) > 2 * max_side:
                img.draft("RGB", (max_side, max_side))
            img.load()
            rgb = img if img.mode == "RGB" else img.convert("RGB")  # convert() would copy
    except OSError as exc:
        raise DatasetError(f"{path}: cannot decode image: {exc}") from exc
    w, h = expected_size
    if max_side is not None and max(w, h) > max_side:
        _, rw, rh, _, _ = letterbox_size(w, h, max_side)
        if rgb.size != (rw, rh):
            rgb = rgb.resize((rw, rh), Image.Resampling.BILINEAR)
    return np.asarray(rgb)


def scale_boxes(boxes: np.ndarray, image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes annotated on a width x height image -> pixels of `image` (a possibly resized copy)."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return boxes.astype(np.float32, copy=True)
    factors = np.asarray([w / width, h / height, w / width, h / height], dtype=np.float32)
    return boxes.astype(np.float32) * factors


def build_cache(
    paths: Sequence[Path],
    sizes: Sequence[tuple[int, int]],
    max_side: int | None,
    draft: bool,
    workers: int | None = None,
) -> list[np.ndarray]:
    """Decode every image once (thread pool); returns the arrays in input order."""
    start = time.perf_counter()
    workers = workers or min(8, os.cpu_count() or 1)

    def one(i: int) -> np.ndarray:
        return decode_rgb(paths[i], sizes[i], max_side, draft)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        images = list(pool.map(one, range(len(paths))))
    nbytes = sum(a.nbytes for a in images)
    logger.info(
        "cached %d images (%.0f MiB) in %.1f s with %d threads",
        len(images),
        nbytes / 2**20,
        time.perf_counter() - start,
        workers,
    )
    return images
