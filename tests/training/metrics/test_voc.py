"""VOC mAP@0.5 (all-point interpolation) on hand-computed cases and a loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.training.metrics_helpers import reference_voc
from training.metrics import GroundTruth, Predictions, all_point_ap, voc_evaluate


def gt(boxes: list[list[float]], labels: list[int], difficult: list[bool] | None = None
       ) -> GroundTruth:
    return GroundTruth(np.array(boxes, float).reshape(-1, 4), np.array(labels), difficult)


def det(boxes: list[list[float]], scores: list[float], labels: list[int]) -> Predictions:
    return Predictions(np.array(boxes, float).reshape(-1, 4), np.array(scores), np.array(labels))


A = [0.0, 0.0, 100.0, 100.0]
B = [200.0, 200.0, 260.0, 300.0]
FAR = [400.0, 0.0, 450.0, 50.0]


def test_single_perfect_detection() -> None:
    res = voc_evaluate([gt([A], [0])], [det([A], [0.9], [0])], num_classes=1)
    assert res.map == pytest.approx(1.0)
    assert res.per_class_ap.tolist() == [pytest.approx(1.0)]


def test_tp_fp_tp_by_hand() -> None:
    # Ranked TP, FP, TP over 2 objects: recall .5 .5 1, precision 1 .5 2/3.
    # All-point: envelope 1 up to recall .5, then 2/3 -> .5 * 1 + .5 * 2/3 = 5/6.
    res = voc_evaluate([gt([A, B], [0, 0])], [det([A, FAR, B], [0.9, 0.8, 0.7], [0, 0, 0])], 1)
    assert res.map == pytest.approx(5 / 6)
    # FP first: precision 0, 1/2, 2/3 at recall 0, .5, 1 -> envelope 2/3 everywhere.
    res = voc_evaluate([gt([A, B], [0, 0])], [det([FAR, A, B], [0.9, 0.8, 0.7], [0, 0, 0])], 1)
    assert res.map == pytest.approx(2 / 3)


def test_all_point_ap_differs_from_11_point() -> None:
    # Recall .5 at precision 1, then nothing: all-point gives exactly .5 (11-point: 6/11).
    assert all_point_ap(np.array([0.5]), np.array([1.0])) == pytest.approx(0.5)


def test_difficult_matches_are_ignored() -> None:
    # A detection on a difficult object is neither TP nor FP; the object is not a positive.
    g = gt([A, B], [0, 0], [False, True])
    res = voc_evaluate([g], [det([B, A], [0.9, 0.8], [0, 0])], 1)
    assert res.map == pytest.approx(1.0)
    assert res.num_positives.tolist() == [1]
    # Duplicates on a difficult object are ignored too.
    res = voc_evaluate([g], [det([B, B, A], [0.9, 0.85, 0.8], [0, 0, 0])], 1)
    assert res.map == pytest.approx(1.0)
    # Only difficult objects: no positives -> nan, left out of the mean.
    res = voc_evaluate([gt([B], [0], [True])], [det([B], [0.9], [0])], 1)
    assert math.isnan(res.per_class_ap[0]) and math.isnan(res.map)


def test_class_without_detections_is_zero_and_without_gt_is_nan() -> None:
    g = gt([A, B], [0, 1])
    res = voc_evaluate([g], [det([A], [0.9], [0])], num_classes=3)
    assert res.per_class_ap[0] == pytest.approx(1.0)
    assert res.per_class_ap[1] == 0.0
    assert math.isnan(res.per_class_ap[2])
    assert res.map == pytest.approx(0.5)  # mean over classes 0 and 1 only


def test_duplicates_are_false_positives() -> None:
    # Image 1: TP then its duplicate (FP); image 2: TP. Ranked TP, FP, TP -> 5/6.
    res = voc_evaluate(
        [gt([A], [0]), gt([B], [0])],
        [det([A, [1.0, 1.0, 100.0, 100.0]], [0.9, 0.8], [0, 0]), det([B], [0.7], [0])],
        1,
    )
    assert res.map == pytest.approx(5 / 6)


def test_wrong_class_and_low_iou_are_false_positives() -> None:
    half = [0.0, 0.0, 100.0, 50.0]  # IoU exactly 0.5 with A -> still a match (>=)
    assert voc_evaluate([gt([A], [0])], [det([half], [0.9], [0])], 1).map == pytest.approx(1.0)
    low = [0.0, 0.0, 100.0, 49.0]  # IoU .49
    assert voc_evaluate([gt([A], [0])], [det([low], [0.9], [0])], 1).map == 0.0
    res = voc_evaluate([gt([A], [0])], [det([A], [0.9], [1])], 2)
    assert res.per_class_ap[0] == 0.0 and math.isnan(res.per_class_ap[1])


def test_detection_goes_to_its_best_object_even_if_taken() -> None:
    # VOC rule: the second detection's best object is A (taken) -> FP, although it also
    # overlaps C by >= .5.
    c = [0.0, 20.0, 100.0, 120.0]
    d2 = [0.0, 5.0, 100.0, 105.0]  # IoU with A .905, with C .739
    res = voc_evaluate([gt([A, c], [0, 0])], [det([A, d2], [0.9, 0.8], [0, 0])], 1)
    assert res.map == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_loop_reference_on_random_data(seed: int) -> None:
    from tests.training.metrics_helpers import random_case

    gts, preds = random_case(seed, num_images=30)
    ours = voc_evaluate(gts, preds, 4)
    ref = reference_voc(gts, preds, 4)
    np.testing.assert_allclose(ours.per_class_ap, ref, atol=1e-12)
    assert 0.0 < ours.map < 1.0
