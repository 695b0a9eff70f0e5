"""FCOS target assignment (torch): which location regresses which ground-truth box.

Conventions match the model output (see docs/CONTRACTS.md and export.postprocess.locations):
locations are levels P3..P7 concatenated, each level row-major over (y, x); the location
(x, y) of a level with stride s sits at (x * s + s // 2, y * s + s // 2) input pixels.

Assignment (official FCOS, with centre sampling as in its `get_sample_region`):

- a location is a candidate for a box when it lies strictly inside it (l, t, r, b > 0);
- with centre sampling (`center_radius` not None) it must also lie strictly inside the
  square of half-side `center_radius * stride` around the box centre, clipped to the box;
- and max(l, t, r, b) (input pixels) must lie in its level's size range [lo, hi] (inclusive);
- among candidate boxes the one with the smallest area wins; equal areas: the lowest index.

Background locations get class -1, matched index -1 and zero box targets.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from export.postprocess import level_sizes

DEFAULT_STRIDES: tuple[int, ...] = (8, 16, 32, 64, 128)
# Level l regresses objects whose max(l, t, r, b) lies in [RANGES[l], RANGES[l + 1]].
DEFAULT_RANGES: tuple[float, ...] = (0.0, 64.0, 128.0, 256.0, 512.0, math.inf)

RangesLike = Sequence[float] | Sequence[tuple[float, float]]


def level_ranges(ranges: RangesLike, num_levels: int) -> list[tuple[float, float]]:
    """(lo, hi) per level from boundaries (num_levels + 1 numbers) or num_levels (lo, hi) pairs."""
    items = list(ranges)
    if len(items) == num_levels + 1 and all(not isinstance(r, Sequence) for r in items):
        bounds = [float(r) for r in items]  # type: ignore[arg-type]
        return list(itertools.pairwise(bounds))
    if len(items) == num_levels and all(isinstance(r, Sequence) and len(r) == 2 for r in items):
        return [(float(r[0]), float(r[1])) for r in items]  # type: ignore[index]
    raise ValueError(
        f"ranges must be {num_levels + 1} boundaries or {num_levels} (lo, hi) pairs: {ranges!r}"
    )


def make_points(
    height: int,
    width: int,
    strides: Sequence[int] = DEFAULT_STRIDES,
    device: torch.device | str | None = None,
    ranges: RangesLike = DEFAULT_RANGES,
) -> tuple[Tensor, Tensor, Tensor]:
    """All locations of a (height, width) input, in model output order.

    Returns points (P, 2) float32 xy input pixels, point_strides (P,) float32 and
    point_ranges (P, 2) float32 (lo, hi) of max(l, t, r, b) in input pixels, where `ranges`
    is either len(strides) + 1 boundaries (level l gets [ranges[l], ranges[l + 1]]) or one
    (lo, hi) pair per level.
    """
    per_level = level_ranges(ranges, len(strides))
    pts, strs, rngs = [], [], []
    for level, ((h, w), s) in enumerate(
        zip(level_sizes(int(height), int(width), tuple(strides)), strides, strict=True)
    ):
        s = int(s)
        xs = torch.arange(w, dtype=torch.float32, device=device) * s + s // 2
        ys = torch.arange(h, dtype=torch.float32, device=device) * s + s // 2
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        pts.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1))  # (h*w, 2) xy
        strs.append(torch.full((h * w,), float(s), dtype=torch.float32, device=device))
        lo_hi = torch.tensor(per_level[level], dtype=torch.float32, device=device)
        rngs.append(lo_hi.expand(h * w, 2))
    return torch.cat(pts), torch.cat(strs), torch.cat(rngs)


def assign_targets(
    points: Tensor,
    point_strides: Tensor,
    ranges: Tensor,
    boxes: Tensor,
    labels: Tensor,
    center_radius: float | None = 1.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """Assign one image's boxes to locations (vectorised over P x M).

    points (P, 2) xy, point_strides (P,), ranges (P, 2) from make_points;
    boxes (M, 4) xyxy input pixels; labels (M,) class ids (0-based, no background class).

    Returns cls_targets (P,) int64 (class id, -1 = background), box_targets (P, 4) float32
    l, t, r, b distances divided by the location's stride (zeros for background) and
    matched (P,) int64 (index into boxes, -1 = background).
    """
    device = points.device
    num_points = points.shape[0]
    boxes = boxes.to(device=device, dtype=torch.float32).reshape(-1, 4)  # (M, 4) xyxy
    labels = labels.to(device=device, dtype=torch.int64).reshape(-1)  # (M,)
    if boxes.shape[0] != labels.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {labels.shape[0]} labels")
    num_boxes = boxes.shape[0]
    if num_boxes == 0:
        return (
            torch.full((num_points,), -1, dtype=torch.int64, device=device),
            torch.zeros((num_points, 4), dtype=torch.float32, device=device),
            torch.full((num_points,), -1, dtype=torch.int64, device=device),
        )

    xs, ys = points[:, 0:1], points[:, 1:2]  # (P, 1) each
    x1, y1, x2, y2 = boxes[None, :, 0], boxes[None, :, 1], boxes[None, :, 2], boxes[None, :, 3]
    ltrb = torch.stack([xs - x1, ys - y1, x2 - xs, y2 - ys], dim=2)  # (P, M, 4) pixels
    candidate = ltrb.amin(dim=2) > 0  # (P, M) strictly inside the box

    if center_radius is not None:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2  # (1, M)
        radius = point_strides[:, None] * float(center_radius)  # (P, 1)
        # Centre region clipped to the box: (P, M) each.
        cx1, cy1 = torch.maximum(cx - radius, x1), torch.maximum(cy - radius, y1)
        cx2, cy2 = torch.minimum(cx + radius, x2), torch.minimum(cy + radius, y2)
        in_center = torch.stack([xs - cx1, ys - cy1, cx2 - xs, cy2 - ys], dim=2).amin(dim=2) > 0
        candidate &= in_center

    max_dist = ltrb.amax(dim=2)  # (P, M)
    candidate &= (max_dist >= ranges[:, 0:1]) & (max_dist <= ranges[:, 1:2])

    area = ((x2 - x1) * (y2 - y1)).expand(num_points, num_boxes)  # (P, M)
    area = torch.where(candidate, area, torch.full_like(area, math.inf))
    min_area = area.amin(dim=1, keepdim=True)  # (P, 1)
    # Explicit tie-break (lowest index among the smallest), independent of argmin's choice.
    box_idx = torch.arange(num_boxes, device=device).expand(num_points, num_boxes)
    is_best = candidate & (area == min_area)
    best = torch.where(is_best, box_idx, torch.full_like(box_idx, num_boxes)).amin(dim=1)  # (P,)
    positive = best < num_boxes  # (P,)

    safe = best.clamp(max=num_boxes - 1)  # (P,)
    matched = torch.where(positive, safe, torch.full_like(safe, -1))
    cls_targets = torch.where(positive, labels[safe], torch.full_like(safe, -1))
    box_targets = ltrb[torch.arange(num_points, device=device), safe]  # (P, 4) pixels
    box_targets = box_targets / point_strides[:, None]
    box_targets = torch.where(positive[:, None], box_targets, torch.zeros_like(box_targets))
    return cls_targets, box_targets, matched


def batch_targets(
    points: Tensor,
    point_strides: Tensor,
    ranges: Tensor,
    boxes: Sequence[Tensor],
    labels: Sequence[Tensor],
    center_radius: float | None = 1.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """assign_targets per image, stacked: cls (B, P) int64, box (B, P, 4), matched (B, P)."""
    if len(boxes) != len(labels):
        raise ValueError(f"{len(boxes)} box tensors but {len(labels)} label tensors")
    out = [
        assign_targets(points, point_strides, ranges, b, lab, center_radius)
        for b, lab in zip(boxes, labels, strict=True)
    ]
    if not out:
        num_points = points.shape[0]
        return (
            torch.empty((0, num_points), dtype=torch.int64, device=points.device),
            torch.empty((0, num_points, 4), dtype=torch.float32, device=points.device),
            torch.empty((0, num_points), dtype=torch.int64, device=points.device),
        )
    cls_t, box_t, matched = zip(*out, strict=True)
    return torch.stack(cls_t), torch.stack(box_t), torch.stack(matched)


def centerness_target(box_targets: Tensor, eps: float = 1e-12) -> Tensor:
    """(N, 4) l, t, r, b -> (N,) sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)).

    Scale-invariant (pixels or stride units alike); 0 where a max is 0.
    """
    lr, tb = box_targets[:, 0::2], box_targets[:, 1::2]  # (N, 2) each
    ratio_lr = lr.amin(dim=1) / lr.amax(dim=1).clamp(min=eps)
    ratio_tb = tb.amin(dim=1) / tb.amax(dim=1).clamp(min=eps)
    return torch.sqrt((ratio_lr * ratio_tb).clamp(min=0))
