"""One annotated image, independent of the annotation format it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Sample:
    """An image and its objects.

    Coordinates are continuous 0-based pixels of the stored image: a box covering the top-left
    pixel only is (0, 0, 1, 1). `width`/`height` are the annotated image size.
    """

    image_id: str
    image_path: Path
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float32 xyxy pixels
    labels: np.ndarray  # (N,) int64 class ids (index into the class tuple used to load)
    difficult: np.ndarray  # (N,) bool: VOC "difficult" or COCO "iscrowd" (ignore in training/eval)

    @property
    def num_objects(self) -> int:
        return int(self.labels.shape[0])


def make_arrays(
    boxes: list[tuple[float, float, float, float]], labels: list[int], difficult: list[bool]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Python lists -> the (N,4) float32, (N,) int64, (N,) bool arrays of a `Sample`."""
    box_arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return box_arr, np.asarray(labels, dtype=np.int64), np.asarray(difficult, dtype=bool)
