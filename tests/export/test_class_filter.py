"""The class filter of export.postprocess (`PostprocessConfig.classes`): applied to the
candidates, so before top-k, NMS and max_detections; the same as filtering an unlimited run."""

from __future__ import annotations

import numpy as np

from export.postprocess import PostprocessConfig, candidate_config, postprocess
from tests.export.test_postprocess import STRIDES, blank, logit


def random_outputs(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cls, box, ctr = blank(96, 128, c=4)
    rng = np.random.default_rng(seed)
    cls[:] = rng.normal(-3.0, 2.0, cls.shape)
    box[:] = rng.uniform(1.0, 40.0, box.shape)
    ctr[:] = rng.normal(0.0, 1.0, ctr.shape)
    return cls, box, ctr


def test_filter_equals_filtering_an_unlimited_run() -> None:
    cls, box, ctr = random_outputs(0)
    unlimited = PostprocessConfig(pre_nms_top_n=100_000, max_detections=100_000)
    full = postprocess(cls, box, ctr, (96, 128), STRIDES, cfg=unlimited)
    for keep in [(1,), (0, 3), (3, 0, 2)]:
        cfg = PostprocessConfig(pre_nms_top_n=100_000, max_detections=100_000, classes=keep)
        got = postprocess(cls, box, ctr, (96, 128), STRIDES, cfg=cfg)
        mask = np.isin(full.class_ids, keep)
        assert len(got) > 0 and set(got.class_ids.tolist()) <= set(keep)
        np.testing.assert_array_equal(got.class_ids, full.class_ids[mask])
        np.testing.assert_array_equal(got.scores, full.scores[mask])
        np.testing.assert_array_equal(got.boxes, full.boxes[mask])


def test_filter_comes_before_max_detections_and_top_k() -> None:
    cls, box, ctr = blank(64, 64)
    # Ten strong class-0 candidates at separate places and one weaker class-2 one.
    for i in range(10):
        cls[i * 6, 0] = logit(0.9)
    cls[3, 2] = logit(0.3)
    box[:] = 2.0
    cfg = PostprocessConfig(max_detections=1, pre_nms_top_n=1)
    assert postprocess(cls, box, ctr, (64, 64), STRIDES, cfg=cfg).class_ids.tolist() == [0]
    only2 = PostprocessConfig(max_detections=1, pre_nms_top_n=1, classes=(2,))
    dets = postprocess(cls, box, ctr, (64, 64), STRIDES, cfg=only2)
    assert dets.class_ids.tolist() == [2] and dets.class_ids.dtype == np.int64


def test_empty_filter_keeps_nothing_and_candidate_config_passes_it() -> None:
    cls, box, ctr = random_outputs(1)
    dets = postprocess(cls, box, ctr, (96, 128), STRIDES, cfg=PostprocessConfig(classes=()))
    assert len(dets) == 0 and dets.boxes.shape == (0, 4)
    assert candidate_config(0.3, 10, 0.5, classes=(1, 2)).classes == (1, 2)
    assert candidate_config(0.3, 10, 0.5).classes is None
