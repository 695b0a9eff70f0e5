"""Golden tests for FCOS target assignment (training.engine.targets)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from export.postprocess import level_sizes as np_level_sizes
from export.postprocess import locations
from training.engine.targets import (
    DEFAULT_RANGES,
    DEFAULT_STRIDES,
    assign_targets,
    assign_targets_padded,
    batch_targets,
    centerness_target,
    level_ranges,
    make_points,
    pad_targets,
)

STRIDES = DEFAULT_STRIDES
# 64x64 input: P3 8x8 (0..63), P4 4x4 (64..79), P5 2x2 (80..83), P6 1x1 (84), P7 1x1 (85).
# 128x128 input: P3 16x16 (0..255), P4 8x8 (256..319), P5 4x4 (320..335), P6 (336..339), P7 340.


def _assign(
    hw: tuple[int, int], boxes: list[list[float]], labels: list[int], radius: float | None,
    ranges: tuple[float, ...] = DEFAULT_RANGES,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    pts, strides, rng = make_points(hw[0], hw[1], STRIDES, "cpu", ranges)
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    lab = torch.tensor(labels, dtype=torch.int64)
    return assign_targets(pts, strides, rng, b, lab, radius)


def _pos(cls_t: torch.Tensor) -> list[int]:
    return torch.nonzero(cls_t >= 0).flatten().tolist()


def _p3(xi: int, yi: int, w: int = 8) -> int:
    return yi * w + xi


@pytest.mark.parametrize("hw", [(64, 64), (128, 96), (100, 75), (37, 129), (512, 512)])
def test_points_match_export_locations(hw: tuple[int, int]) -> None:
    pts, strides, rng = make_points(hw[0], hw[1], STRIDES, "cpu")
    ref = np.concatenate(locations(hw[0], hw[1], STRIDES))
    np.testing.assert_array_equal(pts.numpy(), ref)
    sizes = [h * w for h, w in np_level_sizes(hw[0], hw[1], STRIDES)]
    expected_strides = np.concatenate(
        [np.full(n, s, np.float32) for n, s in zip(sizes, STRIDES, strict=True)]
    )
    np.testing.assert_array_equal(strides.numpy(), expected_strides)
    bounds = [0, 64, 128, 256, 512, math.inf]
    expected_rng = np.concatenate(
        [np.tile([[bounds[i], bounds[i + 1]]], (n, 1)) for i, n in enumerate(sizes)]
    ).astype(np.float32)
    np.testing.assert_array_equal(rng.numpy(), expected_rng)


def test_ranges_boundaries_or_pairs() -> None:
    pairs = [(0, 64), (64, 128), (128, 256), (256, 512), (512, math.inf)]
    assert level_ranges(DEFAULT_RANGES, 5) == level_ranges(pairs, 5)
    a = make_points(64, 64, STRIDES, "cpu", pairs)[2]
    assert torch.equal(a, make_points(64, 64, STRIDES, "cpu")[2])
    with pytest.raises(ValueError):
        level_ranges((0, 64, 128), 5)


def test_small_box_on_p3_exact_locations() -> None:
    # P3 centres 4, 12, 20, ...: strictly inside (0,0,20,20) are x, y in {4, 12}.
    for radius in (None, 1.5):  # centre region 10 +- 12 clipped to the box = the box
        cls_t, box_t, matched = _assign((64, 64), [[0, 0, 20, 20]], [3], radius)
        assert _pos(cls_t) == [_p3(0, 0), _p3(1, 0), _p3(0, 1), _p3(1, 1)]
        assert cls_t[_pos(cls_t)].tolist() == [3] * 4
        assert matched[_pos(cls_t)].tolist() == [0] * 4
        assert (matched[cls_t < 0] == -1).all()
        # Location (4, 4): l, t, r, b = 4, 4, 16, 16 px = 0.5, 0.5, 2, 2 strides.
        torch.testing.assert_close(box_t[0], torch.tensor([0.5, 0.5, 2.0, 2.0]))
        torch.testing.assert_close(box_t[_p3(1, 1)], torch.tensor([1.5, 1.5, 1.0, 1.0]))
        assert (box_t[cls_t < 0] == 0).all()


def test_points_on_the_box_edge_are_not_positive() -> None:
    # (4, 4, 20, 20): centres 4 and 20 sit on the edges; only (12, 12) is strictly inside.
    cls_t, box_t, _ = _assign((64, 64), [[4, 4, 20, 20]], [0], None)
    assert _pos(cls_t) == [_p3(1, 1)]
    torch.testing.assert_close(box_t[_p3(1, 1)], torch.tensor([1.0, 1.0, 1.0, 1.0]))


def test_center_sampling_restricts_positives() -> None:
    box = [[0, 0, 60, 40]]  # every inside P3 location has max(l,t,r,b) <= 56: P3 only
    cls_t, _, _ = _assign((64, 64), box, [1], None)
    expected = [_p3(x, y) for y in range(5) for x in range(7)]  # x in 4..52, y in 4..36
    assert _pos(cls_t) == expected
    # Radius 1.5 * 8 = 12 around (30, 20): x in (18, 42) -> 20, 28, 36; y in (8, 32) -> 12..28.
    cls_t, _, _ = _assign((64, 64), box, [1], 1.5)
    assert _pos(cls_t) == [_p3(x, y) for y in (1, 2, 3) for x in (2, 3, 4)]


def test_center_region_is_clipped_to_the_box() -> None:
    # Narrow box: the centre region 10 +- 12 in x is clipped to (0, 20) -> x in {4, 12};
    # in y 30 +- 12 = (18, 42) -> y in {20, 28, 36}.
    cls_t, _, _ = _assign((64, 64), [[0, 0, 20, 60]], [2], 1.5)
    assert _pos(cls_t) == [_p3(x, y) for y in (2, 3, 4) for x in (0, 1)]
    cls_t, _, _ = _assign((64, 64), [[0, 0, 20, 60]], [2], None)
    assert _pos(cls_t) == [_p3(x, y) for y in range(7) for x in (0, 1)]


def test_big_box_goes_to_p4() -> None:
    # (0,0,128,128) in a 128x128 input: P3 locations have max(l,t,r,b) >= 68 > 64; P4 ones
    # 72..120 (in [64, 128]); P5 ones <= 112 < 128; so all 64 P4 locations, nothing else.
    cls_t, box_t, _ = _assign((128, 128), [[0, 0, 128, 128]], [5], None)
    assert _pos(cls_t) == list(range(256, 320))
    # P4 location (0, 0) is at (8, 8): 8, 8, 120, 120 px = 0.5, 0.5, 7.5, 7.5 strides.
    torch.testing.assert_close(box_t[256], torch.tensor([0.5, 0.5, 7.5, 7.5]))
    # Centre sampling: 64 +- 24 on P4 -> x, y in {56, 72}: P4 grid cells 3 and 4.
    cls_t, _, _ = _assign((128, 128), [[0, 0, 128, 128]], [5], 1.5)
    assert _pos(cls_t) == [256 + 3 * 8 + 3, 256 + 3 * 8 + 4, 256 + 4 * 8 + 3, 256 + 4 * 8 + 4]


def test_custom_ranges() -> None:
    # Ranges 0-16-32-64-128-inf: (0,0,40,40) fits P4's [16, 32] only, at (8|24, 8|24).
    cls_t, box_t, _ = _assign((64, 64), [[0, 0, 40, 40]], [0], None, (0, 16, 32, 64, 128, 1e8))
    assert _pos(cls_t) == [64, 65, 68, 69]
    torch.testing.assert_close(box_t[69], torch.tensor([1.5, 1.5, 1.0, 1.0]))


@pytest.mark.parametrize("small_first", [True, False])
def test_overlap_smallest_box_wins(small_first: bool) -> None:
    big, small = [0, 0, 40, 40], [0, 0, 20, 20]
    boxes, labels = ([small, big], [1, 0]) if small_first else ([big, small], [0, 1])
    small_idx = 0 if small_first else 1
    cls_t, box_t, matched = _assign((64, 64), boxes, labels, None)
    assert _pos(cls_t) == [_p3(x, y) for y in range(5) for x in range(5)]
    in_small = {_p3(0, 0), _p3(1, 0), _p3(0, 1), _p3(1, 1)}
    for p in _pos(cls_t):
        assert cls_t[p].item() == (1 if p in in_small else 0)
        assert matched[p].item() == (small_idx if p in in_small else 1 - small_idx)
    # (12, 12) regresses the small box: 12, 12, 8, 8 px.
    torch.testing.assert_close(box_t[_p3(1, 1)], torch.tensor([1.5, 1.5, 1.0, 1.0]))


def test_equal_area_tie_lowest_index() -> None:
    # Same area (512), overlapping at x, y in {4, 12}: box 0 wins there.
    cls_t, _, matched = _assign((64, 64), [[0, 0, 16, 32], [0, 0, 32, 16]], [7, 8], None)
    for p in (_p3(0, 0), _p3(1, 0), _p3(0, 1), _p3(1, 1)):
        assert (cls_t[p].item(), matched[p].item()) == (7, 0)
    assert cls_t[_p3(2, 0)].item() == 8  # (20, 4) only in box 1
    assert cls_t[_p3(0, 2)].item() == 7  # (4, 20) only in box 0
    cls_t, _, matched = _assign((64, 64), [[0, 0, 20, 20]] * 3, [4, 5, 6], 1.5)
    assert set(cls_t[_pos(cls_t)].tolist()) == {4}
    assert set(matched[_pos(cls_t)].tolist()) == {0}


@pytest.mark.parametrize("radius", [None, 1.5])
def test_no_boxes_all_background(radius: float | None) -> None:
    cls_t, box_t, matched = _assign((64, 64), [], [], radius)
    assert cls_t.shape == (86,) and cls_t.dtype == torch.int64
    assert (cls_t == -1).all() and (matched == -1).all()
    assert box_t.shape == (86, 4) and (box_t == 0).all()


def _naive_assign(pts, strides, rng, boxes, labels, radius):  # type: ignore[no-untyped-def]
    """Per-location loop reference implementation."""
    cls_t = [-1] * len(pts)
    for i, ((x, y), s, (lo, hi)) in enumerate(zip(pts, strides, rng, strict=True)):
        best = None
        for j, (x1, y1, x2, y2) in enumerate(boxes):
            ltrb = (x - x1, y - y1, x2 - x, y2 - y)
            if min(ltrb) <= 0 or not lo <= max(ltrb) <= hi:
                continue
            if radius is not None:
                cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, s * radius
                rx1, ry1 = max(cx - r, x1), max(cy - r, y1)
                rx2, ry2 = min(cx + r, x2), min(cy + r, y2)
                if min(x - rx1, y - ry1, rx2 - x, ry2 - y) <= 0:
                    continue
            area = (x2 - x1) * (y2 - y1)
            if best is None or area < best[0]:
                best = (area, j)
        if best is not None:
            cls_t[i] = labels[best[1]]
    return cls_t


def _random_image_boxes(gen: torch.Generator, m: int, hw: tuple[int, int]) -> torch.Tensor:
    xy = torch.rand(m, 2, generator=gen) * torch.tensor([hw[1], hw[0]])
    wh = torch.rand(m, 2, generator=gen) * 150 + 2
    return torch.cat([xy - wh / 2, xy + wh / 2], dim=1).round()  # (M, 4) xyxy, ties likely


@pytest.mark.slow  # the naive loop reference: ~10 s at radius 2.5
@pytest.mark.parametrize("radius", [None, 1.5, 2.5])
def test_matches_naive_reference(radius: float | None) -> None:
    gen = torch.Generator().manual_seed(0)
    h, w = 96, 160
    pts, strides, rng = make_points(h, w, STRIDES, "cpu")
    for _ in range(5):
        boxes = _random_image_boxes(gen, 12, (h, w))  # (M, 4) xyxy
        labels = torch.randint(0, 20, (12,), generator=gen)
        cls_t, box_t, matched = assign_targets(pts, strides, rng, boxes, labels, radius)
        ref = _naive_assign(
            pts.tolist(), strides.tolist(), rng.tolist(), boxes.tolist(), labels.tolist(), radius
        )
        assert cls_t.tolist() == ref
        pos = cls_t >= 0
        assert pos.any()
        b = boxes[matched[pos]]
        p = pts[pos]
        expected = torch.cat([p - b[:, :2], b[:, 2:] - p], dim=1) / strides[pos, None]
        torch.testing.assert_close(box_t[pos], expected)


def test_batch_targets_stacks() -> None:
    pts, strides, rng = make_points(64, 64, STRIDES, "cpu")
    boxes = [torch.tensor([[0.0, 0, 20, 20]]), torch.zeros((0, 4))]
    labels = [torch.tensor([3]), torch.zeros((0,), dtype=torch.int64)]
    cls_t, box_t, matched = batch_targets(pts, strides, rng, boxes, labels, 1.5)
    assert cls_t.shape == (2, 86) and box_t.shape == (2, 86, 4) and matched.shape == (2, 86)
    assert _pos(cls_t[0]) == [0, 1, 8, 9]
    assert (cls_t[1] == -1).all()


def test_pad_targets_layout() -> None:
    boxes = [torch.tensor([[1.0, 2, 3, 4], [5, 6, 7, 8]]), torch.zeros((0, 4)), torch.ones(1, 4)]
    labels = [torch.tensor([3, 0]), torch.zeros((0,), dtype=torch.int64), torch.tensor([7])]
    pb, pl = pad_targets(boxes, labels)
    assert pb.shape == (3, 2, 4) and pb.dtype == torch.float32
    assert pl.tolist() == [[3, 0], [-1, -1], [7, -1]]
    assert pb[0].tolist() == boxes[0].tolist() and (pb[1] == 0).all() and (pb[2, 1] == 0).all()
    no_labels = [torch.zeros(0, dtype=torch.int64)] * 2
    empty_b, empty_l = pad_targets([torch.zeros((0, 4))] * 2, no_labels)
    assert empty_b.shape == (2, 0, 4) and empty_l.shape == (2, 0)
    assert pad_targets([], [])[0].shape == (0, 0, 4)
    with pytest.raises(ValueError, match="2 boxes but 1 labels"):
        pad_targets([boxes[0]], [torch.tensor([1])])
    with pytest.raises(ValueError, match="box tensors"):
        pad_targets(boxes, labels[:2])


@pytest.mark.parametrize("radius", [None, 1.5])
@pytest.mark.parametrize("max_elements", [1 << 25, 1])  # one piece; one image per piece
def test_padded_batch_matches_per_image_assignment(radius: float | None, max_elements: int) -> None:
    gen = torch.Generator().manual_seed(3)
    hw = (96, 160)
    pts, strides, rng = make_points(hw[0], hw[1], STRIDES, "cpu")
    counts = [12, 0, 1, 30, 5, 0]
    boxes = [_random_image_boxes(gen, m, hw) for m in counts]
    labels = [torch.randint(0, 20, (m,), generator=gen) for m in counts]
    pb, pl = pad_targets(boxes, labels)
    cls_t, box_t, matched = assign_targets_padded(pts, strides, rng, pb, pl, radius, max_elements)
    assert cls_t.shape == (6, pts.shape[0]) and box_t.shape == (6, pts.shape[0], 4)
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        ref = _naive_assign(pts.tolist(), strides.tolist(), rng.tolist(), b.tolist(), lab.tolist(),
                            radius)  # fmt: skip
        assert cls_t[i].tolist() == ref
        one = assign_targets(pts, strides, rng, b, lab, radius)
        assert torch.equal(cls_t[i], one[0]) and torch.equal(matched[i], one[2])
        torch.testing.assert_close(box_t[i], one[1], atol=0, rtol=0)
    assert (cls_t[1] == -1).all() and (box_t[1] == 0).all() and (matched[1] == -1).all()
    assert (cls_t[3] >= 0).any()
    listed = batch_targets(pts, strides, rng, boxes, labels, radius)
    for got, want in zip(listed, (cls_t, box_t, matched), strict=True):
        assert torch.equal(got, want)


def test_batch_targets_takes_padded_tensors_and_refuses_a_mix() -> None:
    pts, strides, rng = make_points(64, 64, STRIDES, "cpu")
    pb = torch.tensor([[[0.0, 0, 20, 20], [0, 0, 0, 0]]])  # the second box is padding
    pl = torch.tensor([[3, -1]])
    cls_t, _, matched = batch_targets(pts, strides, rng, pb, pl, 1.5)
    assert _pos(cls_t[0]) == [0, 1, 8, 9] and set(matched[0].tolist()) == {-1, 0}
    with pytest.raises(TypeError, match="both"):
        batch_targets(pts, strides, rng, pb, [torch.tensor([3])], 1.5)
    with pytest.raises(ValueError, match=r"\(B, M, 4\)"):
        assign_targets_padded(pts, strides, rng, pb[0], pl[0], 1.5)


def test_centerness_target_hand_cases() -> None:
    t = torch.tensor([[1.0, 1, 1, 1], [1, 2, 3, 4], [2, 2, 1, 3], [5, 1, 5, 1], [0, 1, 2, 1]])
    expected = [1.0, math.sqrt(1 / 3 * 2 / 4), math.sqrt(1 / 2 * 2 / 3), 1.0, 0.0]
    torch.testing.assert_close(centerness_target(t), torch.tensor(expected))
    assert centerness_target(torch.zeros((3, 4))).tolist() == [0.0, 0.0, 0.0]
