"""Bootstrap intervals of VOC mAP@0.5: weighted scoring against explicitly repeated images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.training.metrics_helpers import random_case, reference_voc
from training.metrics import GroundTruth, Predictions, voc_evaluate
from training.metrics.bootstrap import (
    bc_interval,
    bootstrap_map,
    paired_bootstrap,
    resample_counts,
)
from training.metrics.voc import voc_records, weighted_ap


def repeated(items: list, counts: np.ndarray) -> list:
    return [x for x, k in zip(items, counts, strict=True) for _ in range(int(k))]


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_weighted_ap_equals_evaluating_the_repeated_images(seed: int) -> None:
    # Distinct scores: with ties, the repeated list interleaves copies of an image's tied
    # detections (d1 d2 d1 d2) where the weights rank them together (d1 d1 d2 d2).
    gts, preds = random_case(seed, num_images=20)
    records = voc_records(gts, preds, 4)
    for counts in resample_counts(20, 4, seed=seed):
        assert counts.sum() == 20 and (counts == 0).any()  # some images drawn 0 times
        ours = weighted_ap(records, counts)
        ref = voc_evaluate(repeated(gts, counts), repeated(preds, counts), 4).per_class_ap
        np.testing.assert_allclose(ours, ref, atol=1e-12)
        loop = reference_voc(repeated(gts, counts), repeated(preds, counts), 4)
        np.testing.assert_allclose(ours, loop, atol=1e-12)


def test_unweighted_records_reproduce_voc_evaluate() -> None:
    gts, preds = random_case(7, num_images=30)
    res = voc_evaluate(gts, preds, 4)
    np.testing.assert_allclose(weighted_ap(voc_records(gts, preds, 4)), res.per_class_ap)
    assert math.isnan(res.per_class_ap[3])  # the class without ground truth
    assert res.num_positives.tolist() == voc_records(gts, preds, 4).npos.sum(0).tolist()


def test_weights_must_match_the_images() -> None:
    gts, preds = random_case(0, num_images=5)
    with pytest.raises(ValueError, match="5 images"):
        weighted_ap(voc_records(gts, preds, 4), np.ones(4))


def test_interval_brackets_the_value_and_is_reproducible() -> None:
    gts, preds = random_case(3, num_images=60)
    records = voc_records(gts, preds, 4)
    first = bootstrap_map(records, n=200, seed=5)
    assert first.value == pytest.approx(voc_evaluate(gts, preds, 4).map)
    assert first.low < first.value < first.high and first.draws == 200 and first.std > 0
    assert bootstrap_map(records, n=200, seed=5) == first
    assert bootstrap_map(records, n=200, seed=6) != first
    # Four times the images: about half the spread.
    gts4, preds4 = random_case(3, num_images=240)
    wide = bootstrap_map(voc_records(gts4, preds4, 4), n=200, seed=5)
    assert wide.std < 0.75 * first.std


def test_bias_corrected_interval_on_known_draws() -> None:
    rng = np.random.default_rng(0)
    # Unbiased draws: the plain 2.5 / 97.5 percentiles, +-1.96 sd.
    res = bc_interval(0.4, 0.4 + rng.normal(0, 0.02, 200_000))
    assert res.low == pytest.approx(0.4 - 1.96 * 0.02, abs=5e-4)
    assert res.high == pytest.approx(0.4 + 1.96 * 0.02, abs=5e-4)
    # Draws that sit 0.01 above the value (as mAP's do): the interval moves down by 0.01.
    res = bc_interval(0.4, 0.41 + rng.normal(0, 0.02, 200_000))
    assert res.low == pytest.approx(0.39 - 1.96 * 0.02, abs=5e-4)
    assert res.high == pytest.approx(0.39 + 1.96 * 0.02, abs=5e-4)
    assert res.mean == pytest.approx(0.41, abs=2e-4) and res.std == pytest.approx(0.02, rel=1e-2)
    # All draws equal to the value, or all above it: finite, no error.
    assert bc_interval(0.0, np.zeros(10)).low == bc_interval(0.0, np.zeros(10)).high == 0.0
    assert bc_interval(0.0, np.ones(10)).low == 1.0
    nan = bc_interval(0.5, np.array([np.nan, np.nan]))
    assert nan.draws == 0 and math.isnan(nan.low)


def test_paired_bootstrap_of_a_model_with_itself_is_exactly_zero() -> None:
    gts, preds = random_case(1, num_images=40)
    records = voc_records(gts, preds, 4)
    res = paired_bootstrap(records, records, n=100)
    assert res.diff.value == res.diff.low == res.diff.high == res.diff.std == 0.0
    assert res.a_wins == 0.0 and res.a == res.b


def test_paired_bootstrap_sees_a_better_model() -> None:
    # B: the random detections; A: the same plus one perfect detection per object, ranked
    # first, so A wins on every draw in which an object exists.
    gts, preds = random_case(2, num_images=40)
    better = []
    for g, p in zip(gts, preds, strict=True):
        better.append(Predictions(np.concatenate([g.boxes, p.boxes]),
                                  np.concatenate([np.full(len(g.labels), 2.0), p.scores]),
                                  np.concatenate([g.labels, p.labels])))
    res = paired_bootstrap(voc_records(gts, better, 4), voc_records(gts, preds, 4), n=100)
    assert res.diff.low > 0 and res.a_wins == 1.0
    assert res.a.value == pytest.approx(voc_evaluate(gts, better, 4).map)
    assert res.diff.value == pytest.approx(res.a.value - res.b.value)


def test_paired_bootstrap_of_several_runs_scores_their_mean() -> None:
    # A: two runs (the second one's detections made around other objects), B: one run. Each
    # side's value and every draw are the mean of its runs' mAPs on that draw.
    gts, preds = random_case(3, num_images=30)
    _, other = random_case(4, num_images=30)
    r1, r2, rb = (voc_records(gts, p, 4) for p in (preds, other, preds))
    one = paired_bootstrap(r1, rb, n=50, seed=7)
    two = paired_bootstrap(r2, rb, n=50, seed=7)
    both = paired_bootstrap([r1, r2], [rb], n=50, seed=7)
    assert both.a.value == pytest.approx((one.a.value + two.a.value) / 2)
    assert both.a.mean == pytest.approx((one.a.mean + two.a.mean) / 2)  # draw by draw
    assert both.b == one.b and both.diff.value == pytest.approx(both.a.value - both.b.value)
    assert paired_bootstrap([r1], rb, n=50, seed=7) == one  # a list of one = the run itself
    with pytest.raises(ValueError, match="no runs"):
        paired_bootstrap([], rb, n=5)
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap([r1, voc_records(gts[:9], preds[:9], 4)], rb, n=5)


def test_paired_bootstrap_refuses_different_images() -> None:
    gts, preds = random_case(0, num_images=10)
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap(voc_records(gts, preds, 4), voc_records(gts[:9], preds[:9], 4))


def test_empty_inputs() -> None:
    assert resample_counts(0, 3).shape == (3, 0)
    records = voc_records([], [], 2)
    assert records.num_images == 0
    res = bootstrap_map(records, n=10)
    assert math.isnan(res.value) and math.isnan(res.low) and res.draws == 0
    # Images without any objects or detections: nan as well, never an error.
    empty = [GroundTruth(np.zeros((0, 4)), np.zeros(0, int))] * 3
    res = bootstrap_map(voc_records(empty, [Predictions.empty()] * 3, 2), n=10)
    assert math.isnan(res.value) and res.draws == 0
