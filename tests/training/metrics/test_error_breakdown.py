"""training.metrics.error_breakdown: hand-built cases per error kind, empty inputs, and a plain-loop
reference on random data."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import GroundTruth, Predictions, voc_evaluate
from training.metrics.error_breakdown import KINDS, error_breakdown

CAT, DOG, PERSON = 0, 1, 2


def box(x1: float, y1: float, x2: float, y2: float) -> list[float]:
    return [x1, y1, x2, y2]


def test_each_kind_by_hand() -> None:
    gt = GroundTruth(
        np.array([box(0, 0, 10, 10), box(20, 0, 30, 10), box(40, 0, 50, 10)]),  # (3, 4) xyxy
        np.array([CAT, DOG, PERSON]),
        np.array([False, False, True]),  # the person is difficult
    )
    pred = Predictions(
        np.array([
            box(0, 0, 10, 10),  # cat, exact: correct
            box(0, 0, 10, 10),  # cat again: duplicate
            box(5, 0, 15, 10),  # cat, IoU 1/3 with the cat: localisation
            box(20, 0, 30, 10),  # cat on the dog: confusion cat -> dog
            box(40, 0, 50, 10),  # person on the difficult person: ignored
            box(100, 100, 110, 110),  # dog on nothing: background
            box(20, 0, 30, 10),  # dog on the dog, but below the threshold: not counted
        ]),
        np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.3]),
        np.array([CAT, CAT, CAT, CAT, PERSON, DOG, DOG]),
    )
    b = error_breakdown([gt], [pred], 3, score_threshold=0.4)
    assert b.kinds["correct"].tolist() == [1, 0, 0]
    assert b.kinds["duplicate"].tolist() == [1, 0, 0]
    assert b.kinds["localisation"].tolist() == [1, 0, 0]
    assert b.kinds["confusion"].tolist() == [1, 0, 0]
    assert b.kinds["ignored"].tolist() == [0, 0, 1]
    assert b.kinds["background"].tolist() == [0, 1, 0]
    assert b.detections.tolist() == [4, 1, 1]
    assert b.confusions[CAT, DOG] == 1 and b.confusions.sum() == 1
    assert b.top_confusions() == [(CAT, DOG, 1)]
    assert b.objects.tolist() == [1, 1, 0]  # the difficult person does not count
    assert b.missed.tolist() == [0, 1, 0]  # the dog's only detection is below the threshold
    assert b.objects_by_size.tolist() == [2, 0, 0]  # 100 px² each: small
    assert b.missed_by_size.tolist() == [1, 0, 0]
    # At threshold 0.2 the low-scoring dog detection is correct and the dog is found.
    low = error_breakdown([gt], [pred], 3, score_threshold=0.2)
    assert low.kinds["correct"].tolist() == [1, 1, 0] and low.missed.sum() == 0


def test_localisation_wins_over_confusion_and_near_iou_sets_background() -> None:
    gt = GroundTruth(np.array([box(0, 0, 10, 10), box(5, 0, 15, 10)]), np.array([CAT, DOG]))
    pred = Predictions(np.array([box(4, 0, 14, 10)]), np.array([0.9]), np.array([CAT]))
    b = error_breakdown([gt], [pred], 3)  # IoU 0.6/1.4 with the cat, 0.9/1.1 with the dog
    assert b.kinds["localisation"].tolist() == [1, 0, 0] and b.confusions.sum() == 0
    far = Predictions(np.array([box(9, 0, 19, 10)]), np.array([0.9]), np.array([PERSON]))
    b = error_breakdown([gt], [far], 3, near_iou=0.7)  # best IoU 6/14 < 0.7
    assert b.kinds["background"].tolist() == [0, 0, 1]


def test_sizes_follow_coco_areas() -> None:
    gt = GroundTruth(np.array([box(0, 0, 31, 31), box(0, 0, 32, 32), box(0, 0, 96, 96),
                               box(0, 0, 200, 100)]), np.array([CAT, CAT, DOG, DOG]))
    b = error_breakdown([gt], [Predictions.empty()], 3)
    assert b.objects_by_size.tolist() == [1, 1, 2]  # 32² is medium, 96² large
    assert b.missed_by_size.tolist() == [1, 1, 2] and b.missed.tolist() == [2, 2, 0]


def test_empty_inputs() -> None:
    b = error_breakdown([], [], 3)
    assert all(b.kinds[k].sum() == 0 for k in KINDS) and b.objects.sum() == 0
    assert b.top_confusions() == []
    no_gt = GroundTruth(np.zeros((0, 4)), np.zeros((0,), np.int64))
    pred = Predictions(np.array([box(0, 0, 5, 5), box(1, 1, 6, 6)]), np.array([0.9, 0.8]),
                       np.array([CAT, DOG]))
    b = error_breakdown([no_gt], [pred], 3)
    assert b.kinds["background"].tolist() == [1, 1, 0] and b.missed.sum() == 0
    with pytest.raises(ValueError, match="prediction images"):
        error_breakdown([no_gt], [], 3)


def reference(gts: list[GroundTruth], preds: list[Predictions], num_classes: int, thr: float,
              near: float = 0.1) -> tuple[dict[str, list[int]], dict[tuple[int, int], int], int]:
    """The same labels by plain loops: (kind counts per class, confusion pairs, misses)."""

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        iw = min(a[2], b[2]) - max(a[0], b[0])
        ih = min(a[3], b[3]) - max(a[1], b[1])
        if iw <= 0 or ih <= 0:
            return 0.0
        inter = iw * ih
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    kinds = {k: [0] * num_classes for k in KINDS}
    pairs: dict[tuple[int, int], int] = {}
    missed = 0
    for gt, pred in zip(gts, preds, strict=True):
        taken = [False] * len(gt.labels)
        order = sorted(range(len(pred.scores)), key=lambda i: -pred.scores[i])
        for i in order:
            if pred.scores[i] < thr:
                continue
            c = int(pred.labels[i])
            same = [(iou(pred.boxes[i], gt.boxes[j]), j) for j in range(len(gt.labels))
                    if gt.labels[j] == c]
            other = [(iou(pred.boxes[i], gt.boxes[j]), j) for j in range(len(gt.labels))
                     if gt.labels[j] != c]
            best_iou, best = max(same, key=lambda t: t[0]) if same else (0.0, -1)
            if best_iou >= 0.5 and gt.difficult[best]:
                kind = "ignored"
            elif best_iou >= 0.5 and not taken[best]:
                kind, taken[best] = "correct", True
            elif best_iou >= 0.5:
                kind = "duplicate"
            elif best_iou >= near:
                kind = "localisation"
            elif other and max(other)[0] >= near:
                kind = "confusion"
                true = int(gt.labels[max(other, key=lambda t: t[0])[1]])
                pairs[(c, true)] = pairs.get((c, true), 0) + 1
            else:
                kind = "background"
            kinds[kind][c] += 1
        missed += sum(1 for j in range(len(gt.labels)) if not taken[j] and not gt.difficult[j])
    return kinds, pairs, missed


def random_image(rng: np.random.Generator, num_classes: int) -> tuple[GroundTruth, Predictions]:
    n_gt, n_det = rng.integers(0, 6), rng.integers(0, 12)
    xy = rng.uniform(0, 80, (n_gt, 2))
    gt_boxes = np.concatenate([xy, xy + rng.uniform(5, 60, (n_gt, 2))], axis=1)  # (G, 4)
    gt = GroundTruth(gt_boxes, rng.integers(0, num_classes, n_gt), rng.random(n_gt) < 0.15)
    src = rng.integers(0, max(n_gt, 1), n_det)  # detections near random objects, or anywhere
    base = gt_boxes[src] if n_gt else np.tile([[10.0, 10.0, 40.0, 40.0]], (n_det, 1))
    det_boxes = base + rng.normal(0, 6, (n_det, 4))
    det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 1)
    scores = rng.choice([0.3, 0.45, 0.6, 0.75, 0.9], n_det) + rng.uniform(0, 0.01, n_det)
    return gt, Predictions(det_boxes, scores, rng.integers(0, num_classes, n_det))


@pytest.mark.parametrize("seed", range(5))
def test_matches_plain_loop_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    images = [random_image(rng, 3) for _ in range(30)]
    gts, preds = [g for g, _ in images], [p for _, p in images]
    b = error_breakdown(gts, preds, 3, score_threshold=0.4)
    kinds, pairs, missed = reference(gts, preds, 3, 0.4)
    assert {k: v.tolist() for k, v in b.kinds.items()} == kinds
    assert {(p, t): n for p, t, n in b.top_confusions(9)} == pairs
    assert int(b.missed.sum()) == missed
    assert int(b.objects.sum() - b.missed.sum()) == int(b.kinds["correct"].sum())


def test_objects_are_voc_positives() -> None:
    """Objects are counted as VOC counts its positives (difficult ones left out)."""
    rng = np.random.default_rng(7)
    images = [random_image(rng, 3) for _ in range(40)]
    gts, preds = [g for g, _ in images], [p for _, p in images]
    b = error_breakdown(gts, preds, 3, score_threshold=0.0)
    assert b.objects.tolist() == voc_evaluate(gts, preds, 3).num_positives.tolist()
