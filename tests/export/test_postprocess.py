"""Decode against hand-computed cases; thresholds, top-k, NMS limits and empty outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from export.postprocess import (
    PostprocessConfig,
    level_sizes,
    locations,
    postprocess,
)
from export.preprocess import Letterbox

STRIDES = (8, 16, 32, 64, 128)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def blank(h: int, w: int, c: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = sum(a * b for a, b in level_sizes(h, w, STRIDES))
    return (
        np.full((p, c), -10.0, np.float32),
        np.ones((p, 4), np.float32),
        np.full((p, 1), 10.0, np.float32),
    )


def test_level_sizes_and_locations_hand_computed() -> None:
    assert level_sizes(64, 96, STRIDES) == [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]
    locs = locations(64, 96, STRIDES)
    assert [loc.shape for loc in locs] == [(96, 2), (24, 2), (6, 2), (2, 2), (1, 2)]
    # Row-major over (y, x): index 1 of P3 is x=1, y=0; index 12 is x=0, y=1.
    assert locs[0][0].tolist() == [4, 4]
    assert locs[0][1].tolist() == [12, 4]
    assert locs[0][12].tolist() == [4, 12]
    assert locs[3][1].tolist() == [96, 32]
    assert locs[4][0].tolist() == [64, 64]
    assert locations(64, 96, STRIDES)[0] is locs[0]  # cached per shape


def test_decode_single_box_hand_computed() -> None:
    cls, box, ctr = blank(64, 64)
    # P3 location index 9 -> x=1, y=1 -> centre (12, 12).
    cls[9, 2] = logit(0.64)
    box[9] = [2.0, 3.0, 10.0, 20.0]
    ctr[9, 0] = logit(0.25)
    dets = postprocess(cls, box, ctr, (64, 64), STRIDES)
    assert len(dets) == 1
    np.testing.assert_allclose(dets.boxes[0], [10, 9, 22, 32], atol=1e-5)
    assert dets.scores[0] == pytest.approx(math.sqrt(0.64 * 0.25), abs=1e-6)
    assert dets.class_ids.tolist() == [2]


def test_decode_maps_back_and_clips() -> None:
    cls, box, ctr = blank(64, 64)
    cls[9, 0] = logit(0.9)
    box[9] = [20.0, 20.0, 100.0, 4.0]  # runs off the left/top and right edges
    lb = Letterbox(0.5, 0.5, 120, 100, 64, 64)  # valid area 60 x 50 input px
    dets = postprocess(cls, box, ctr, (64, 64), STRIDES, lb)
    # input box (-8, -8, 112, 16) -> clipped to (0, 0, 60, 16) -> /0.5
    np.testing.assert_allclose(dets.boxes[0], [0, 0, 120, 32], atol=1e-4)


def test_empty_outputs_are_arrays() -> None:
    cls, box, ctr = blank(64, 64)
    dets = postprocess(cls, box, ctr, (64, 64), STRIDES)
    assert dets.boxes.shape == (0, 4) and dets.scores.shape == (0,)
    assert dets.class_ids.shape == (0,) and dets.class_ids.dtype == np.int64


def test_candidate_threshold_and_empty_boxes_dropped() -> None:
    cls, box, ctr = blank(64, 64)
    cls[0, 0] = logit(0.04)  # under the 0.05 candidate threshold
    cls[1, 0] = logit(0.06)
    cls[2, 1] = logit(0.9)
    box[2] = 0.0  # zero-area box is dropped
    dets = postprocess(cls, box, ctr, (64, 64), STRIDES)
    assert len(dets) == 1 and dets.class_ids.tolist() == [0]


def test_thresholds_at_the_ends_and_the_final_score_cut() -> None:
    cls, box, ctr = blank(64, 64)
    cls[1, 0] = logit(0.06)  # score sqrt(0.06 * ~1) ~ 0.245
    cls[5, 1] = logit(0.9)  # score ~ 0.949
    assert len(postprocess(cls, box, ctr, (64, 64), STRIDES,
                           cfg=PostprocessConfig(candidate_threshold=1.0))) == 0  # fmt: skip
    everything = postprocess(cls, box, ctr, (64, 64), STRIDES,
                             cfg=PostprocessConfig(candidate_threshold=0.0))  # fmt: skip
    assert len(everything) == 100  # every location and class, capped at max_detections
    strong = postprocess(cls, box, ctr, (64, 64), STRIDES,
                         cfg=PostprocessConfig(score_threshold=0.5))  # fmt: skip
    assert strong.class_ids.tolist() == [1] and strong.scores[0] == pytest.approx(0.9487, 1e-3)


def test_centerness_off_scores_by_class_probability_alone() -> None:
    cls, box, ctr = blank(64, 64)
    box[[9, 10]] = [[8, 8, 8, 8], [8, 8, 8, 8]]  # IoU 1/3: at nms_iou 0.3 only one survives
    cls[9, 0], cls[10, 0] = logit(0.9), logit(0.6)
    ctr[9, 0], ctr[10, 0] = logit(0.1), logit(0.8)  # centre-ness reverses the order
    on = postprocess(cls, box, ctr, (64, 64), STRIDES, cfg=PostprocessConfig(nms_iou=0.3))
    off_cfg = PostprocessConfig(nms_iou=0.3, centerness=False)
    off = postprocess(cls, box, ctr, (64, 64), STRIDES, cfg=off_cfg)
    # On: sqrt(0.9 * 0.1) = 0.300 < sqrt(0.6 * 0.8) = 0.693, so location 10's box is kept.
    assert on.scores.tolist() == pytest.approx([math.sqrt(0.48)], rel=1e-5)
    assert on.boxes[0, 0] == pytest.approx(12.0)  # location 10 is at x = 20
    # Off: the class probability 0.9 wins, location 9's box.
    assert off.scores.tolist() == pytest.approx([0.9], rel=1e-5)
    assert off.boxes[0, 0] == pytest.approx(4.0)


def test_classwise_nms_and_max_detections() -> None:
    cls, box, ctr = blank(64, 64)
    # Two overlapping boxes of class 0, the same box for class 1: NMS only within a class.
    box[[9, 10]] = [[8, 8, 8, 8], [8, 8, 8, 8]]  # (4,4,20,20) vs (12,4,28,20): IoU 1/3
    cls[9, 0], cls[10, 0], cls[9, 1] = logit(0.9), logit(0.8), logit(0.7)
    dets = postprocess(cls, box, ctr, (64, 64), STRIDES, cfg=PostprocessConfig(nms_iou=0.3))
    assert sorted(dets.class_ids.tolist()) == [0, 1]
    dets = postprocess(cls, box, ctr, (64, 64), STRIDES, cfg=PostprocessConfig(nms_iou=0.4))
    assert len(dets) == 3
    assert dets.scores.tolist() == sorted(dets.scores.tolist(), reverse=True)
    dets = postprocess(cls, box, ctr, (64, 64), STRIDES, cfg=PostprocessConfig(max_detections=2))
    assert len(dets) == 2


def test_top_k_per_level() -> None:
    cls, box, ctr = blank(64, 64)
    rng = np.random.default_rng(0)
    n3 = 64  # P3 of a 64x64 input has 8x8 locations
    cls[:n3, 0] = rng.uniform(0.0, 3.0, n3)
    box[:n3] = 2.0
    cfg = PostprocessConfig(pre_nms_top_n=5, nms_iou=1.0, max_detections=1000)
    dets = postprocess(cls, box, ctr, (64, 64), STRIDES, cfg=cfg)
    assert len(dets) == 5
    best = np.sort(cls[:n3, 0])[-5:]
    np.testing.assert_allclose(
        np.sort(dets.scores), np.sqrt(1 / (1 + np.exp(-best)) * 1 / (1 + np.exp(-10.0))), rtol=1e-5
    )


def test_wrong_location_count_raises() -> None:
    cls, box, ctr = blank(64, 64)
    with pytest.raises(ValueError, match="locations"):
        postprocess(cls, box, ctr, (96, 64), STRIDES)

