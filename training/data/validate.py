"""Shared checks of the loaders: class lists and box geometry."""

from __future__ import annotations

import math
from collections.abc import Sequence

from training.data.errors import DatasetError

DEFAULT_TOLERANCE = 2.0  # px a box may stick out of the image before it counts as invalid


class InvalidBoxError(ValueError):
    """A box that cannot be used; the loader adds the file name."""


def check_classes(classes: Sequence[str] | None, default: Sequence[str]) -> tuple[str, ...]:
    """Validated class tuple (class id = position): non-empty, unique, non-blank names."""
    if isinstance(classes, str):
        raise DatasetError(f"classes must be a sequence of names, not the string {classes!r}")
    names = tuple(default if classes is None else classes)
    if not names:
        raise DatasetError("classes must not be empty")
    if any(not isinstance(n, str) or not n.strip() for n in names):
        raise DatasetError(f"class names must be non-empty strings: {names!r}")
    if len(set(names)) != len(names):
        raise DatasetError(f"duplicate class names in {names!r}")
    return names


def check_box(
    x1: float, y1: float, x2: float, y2: float, width: int, height: int, tolerance: float
) -> tuple[tuple[float, float, float, float], bool]:
    """Validate a 0-based xyxy box against a width x height image.

    Coordinates more than `tolerance` px outside the image, non-finite values and boxes with
    no width or height raise `InvalidBoxError`; small overshoots are clipped.
    Returns (box, clipped).
    """
    values = (x1, y1, x2, y2)
    if not all(math.isfinite(v) for v in values):
        raise InvalidBoxError(f"non-finite box {values}")
    if x1 < -tolerance or y1 < -tolerance or x2 > width + tolerance or y2 > height + tolerance:
        raise InvalidBoxError(
            f"box {values} lies outside the {width}x{height} image (tolerance {tolerance} px)"
        )
    cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
    cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
    if cx2 <= cx1 or cy2 <= cy1:
        raise InvalidBoxError(f"degenerate box {values} (needs x2 > x1 and y2 > y1)")
    clipped = (cx1, cy1, cx2, cy2) != values
    return (cx1, cy1, cx2, cy2), clipped
