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


def pad_targets(
    boxes: Sequence[Tensor], labels: Sequence[Tensor], device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """Per-image boxes and labels -> one padded pair, built where they are (the host, in training).

    boxes[i] (M_i, 4) xyxy, labels[i] (M_i,) -> boxes (B, M, 4) float32 (zeros as padding) and
    labels (B, M) int64 (-1 as padding), M = max M_i (0 when no image has a box), on `device`
    (default: that of the first box tensor, or the CPU). Two tensors move to a GPU in two
    copies, where the lists took 2 B.
    """
    if len(boxes) != len(labels):
        raise ValueError(f"{len(boxes)} box tensors but {len(labels)} label tensors")
    if device is None:
        device = boxes[0].device if len(boxes) else "cpu"
    counts = [int(b.reshape(-1, 4).shape[0]) for b in boxes]
    for n, lab in zip(counts, labels, strict=True):
        if int(lab.reshape(-1).shape[0]) != n:
            raise ValueError(f"{n} boxes but {lab.reshape(-1).shape[0]} labels")
    width = max(counts, default=0)
    out_boxes = torch.zeros((len(boxes), width, 4), dtype=torch.float32, device=device)
    out_labels = torch.full((len(boxes), width), -1, dtype=torch.int64, device=device)
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        out_boxes[i, : counts[i]] = b.reshape(-1, 4).to(device=device, dtype=torch.float32)
        out_labels[i, : counts[i]] = lab.reshape(-1).to(device=device, dtype=torch.int64)
    return out_boxes, out_labels


def assign_targets_padded(
    points: Tensor,
    point_strides: Tensor,
    ranges: Tensor,
    boxes: Tensor,
    labels: Tensor,
    center_radius: float | None = 1.5,
    max_elements: int = 1 << 25,
) -> tuple[Tensor, Tensor, Tensor]:
    """Assign a whole batch at once (vectorised over B x P x M; the module docstring's rules).

    points (P, 2) xy, point_strides (P,), ranges (P, 2) from make_points; boxes (B, M, 4) xyxy
    input pixels and labels (B, M) class ids, -1 marking padding (pad_targets). A fixed number
    of kernels per batch instead of per image: on a GPU the per-image loop's ~100 launches an
    image were most of a training step. Images are taken in chunks of at most `max_elements`
    (location, box) pairs to bound memory.

    Returns cls_targets (B, P) int64 (-1 = background), box_targets (B, P, 4) float32 l, t,
    r, b / the location's stride (zeros for background) and matched (B, P) int64 (index into
    the image's boxes, -1 = background).
    """
    device = points.device
    boxes = boxes.to(device=device, dtype=torch.float32)  # (B, M, 4) xyxy
    labels = labels.to(device=device, dtype=torch.int64)  # (B, M)
    if boxes.dim() != 3 or boxes.shape[2] != 4 or labels.shape != boxes.shape[:2]:
        shapes = f"{tuple(boxes.shape)} and {tuple(labels.shape)}"
        raise ValueError(f"boxes (B, M, 4) and labels (B, M) expected, got {shapes}")
    batch, num_boxes = labels.shape
    num_points = points.shape[0]
    if num_boxes == 0 or batch == 0:
        return (
            torch.full((batch, num_points), -1, dtype=torch.int64, device=device),
            torch.zeros((batch, num_points, 4), dtype=torch.float32, device=device),
            torch.full((batch, num_points), -1, dtype=torch.int64, device=device),
        )
    chunk = max(1, max_elements // (num_points * num_boxes))
    grid = (points, point_strides, ranges)
    parts = [
        _assign_chunk(*grid, boxes[i : i + chunk], labels[i : i + chunk], center_radius)
        for i in range(0, batch, chunk)
    ]
    if len(parts) == 1:
        return parts[0]
    cls_t, box_t, matched = zip(*parts, strict=True)
    return torch.cat(cls_t), torch.cat(box_t), torch.cat(matched)


def _assign_chunk(
    points: Tensor,
    point_strides: Tensor,
    ranges: Tensor,
    boxes: Tensor,
    labels: Tensor,
    center_radius: float | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """assign_targets_padded for boxes (B, M, 4), labels (B, M) with M >= 1, in one piece."""
    batch, num_boxes = labels.shape
    num_points = points.shape[0]
    xs, ys = points[None, :, 0:1], points[None, :, 1:2]  # (1, P, 1) each
    x1, y1 = boxes[:, None, :, 0], boxes[:, None, :, 1]  # (B, 1, M) each
    x2, y2 = boxes[:, None, :, 2], boxes[:, None, :, 3]
    left, top, right, bottom = xs - x1, ys - y1, x2 - xs, y2 - ys  # (B, P, M) pixels
    # Strictly inside a real box (padding has label -1).
    candidate = (left > 0) & (top > 0) & (right > 0) & (bottom > 0) & (labels[:, None, :] >= 0)
    if center_radius is not None:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2  # (B, 1, M)
        radius = point_strides[None, :, None] * float(center_radius)  # (1, P, 1)
        # Centre region clipped to the box: (B, P, M) each.
        cx1, cy1 = torch.maximum(cx - radius, x1), torch.maximum(cy - radius, y1)
        cx2, cy2 = torch.minimum(cx + radius, x2), torch.minimum(cy + radius, y2)
        candidate &= (xs - cx1 > 0) & (ys - cy1 > 0) & (cx2 - xs > 0) & (cy2 - ys > 0)
    max_dist = torch.maximum(torch.maximum(left, top), torch.maximum(right, bottom))  # (B, P, M)
    candidate &= (max_dist >= ranges[None, :, 0:1]) & (max_dist <= ranges[None, :, 1:2])

    area = ((x2 - x1) * (y2 - y1)).expand(batch, num_points, num_boxes)  # (B, P, M)
    area = torch.where(candidate, area, torch.full_like(area, math.inf))
    min_area = area.amin(dim=2, keepdim=True)  # (B, P, 1)
    # Explicit tie-break (lowest index among the smallest), independent of argmin's choice.
    box_idx = torch.arange(num_boxes, device=points.device).expand(batch, num_points, num_boxes)
    is_best = candidate & (area == min_area)
    best = torch.where(is_best, box_idx, torch.full_like(box_idx, num_boxes)).amin(dim=2)
    positive = best < num_boxes  # (B, P)

    safe = best.clamp(max=num_boxes - 1)  # (B, P)
    matched = torch.where(positive, safe, torch.full_like(safe, -1))
    cls_targets = torch.where(positive, labels.gather(1, safe), torch.full_like(safe, -1))
    mb = boxes.gather(1, safe[..., None].expand(batch, num_points, 4))  # (B, P, 4) xyxy
    px, py = points[None, :, 0], points[None, :, 1]  # (1, P) each
    ltrb = torch.stack([px - mb[..., 0], py - mb[..., 1], mb[..., 2] - px, mb[..., 3] - py], 2)
    box_targets = ltrb / point_strides[None, :, None]  # (B, P, 4) stride units
    box_targets = torch.where(positive[..., None], box_targets, torch.zeros_like(box_targets))
    return cls_targets, box_targets, matched


def assign_targets(
    points: Tensor,
    point_strides: Tensor,
    ranges: Tensor,
    boxes: Tensor,
    labels: Tensor,
    center_radius: float | None = 1.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """One image: boxes (M, 4) xyxy input pixels, labels (M,) class ids (0-based).

    Returns cls_targets (P,), box_targets (P, 4) and matched (P,) as assign_targets_padded.
    """
    boxes = boxes.reshape(-1, 4)  # (M, 4) xyxy
    labels = labels.reshape(-1)  # (M,)
    if boxes.shape[0] != labels.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {labels.shape[0]} labels")
    cls_t, box_t, matched = assign_targets_padded(
        points, point_strides, ranges, boxes[None], labels[None], center_radius
    )
    return cls_t[0], box_t[0], matched[0]


def batch_targets(
    points: Tensor,
    point_strides: Tensor,
    ranges: Tensor,
    boxes: Sequence[Tensor] | Tensor,
    labels: Sequence[Tensor] | Tensor,
    center_radius: float | None = 1.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """A batch's targets: cls (B, P) int64, box (B, P, 4), matched (B, P).

    boxes and labels are per-image lists, or already padded tensors (B, M, 4) and (B, M)
    with -1 labels as padding (pad_targets).
    """
    if isinstance(boxes, Tensor) and isinstance(labels, Tensor):
        padded = boxes, labels
    elif isinstance(boxes, Tensor) or isinstance(labels, Tensor):
        raise TypeError("boxes and labels must both be lists or both padded tensors")
    else:
        padded = pad_targets(boxes, labels, points.device)
    return assign_targets_padded(points, point_strides, ranges, *padded, center_radius)


def centerness_target(box_targets: Tensor, eps: float = 1e-12) -> Tensor:
    """(N, 4) l, t, r, b -> (N,) sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)).

    Scale-invariant (pixels or stride units alike); 0 where a max is 0.
    """
    lr, tb = box_targets[:, 0::2], box_targets[:, 1::2]  # (N, 2) each
    ratio_lr = lr.amin(dim=1) / lr.amax(dim=1).clamp(min=eps)
    ratio_tb = tb.amin(dim=1) / tb.amax(dim=1).clamp(min=eps)
    return torch.sqrt((ratio_lr * ratio_tb).clamp(min=0))
