"""COCO-style AP against pycocotools' COCOeval on random-but-realistic cases."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest

from tests.training.metrics_helpers import random_case
from training.metrics import GroundTruth, Predictions, coco_evaluate

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

KEYS = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")


def run_cocoeval(
    gts: list[GroundTruth], preds: list[Predictions], num_classes: int,
    max_dets: tuple[int, int, int] = (1, 10, 100),
) -> COCOeval:
    """COCOeval (evaluated and accumulated) with difficult -> iscrowd=1."""
    images, anns, results = [], [], []
    for i, (g, p) in enumerate(zip(gts, preds, strict=True), start=1):
        images.append({"id": i, "width": 1000, "height": 1000})
        for b, lab, diff in zip(g.boxes, g.labels, g.difficult, strict=True):
            x1, y1, x2, y2 = (float(v) for v in b)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(lab) + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                         "iscrowd": int(diff)})
        for b, s, lab in zip(p.boxes, p.scores, p.labels, strict=True):
            x1, y1, x2, y2 = (float(v) for v in b)
            results.append({"image_id": i, "category_id": int(lab) + 1,
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s)})
    cats = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": anns, "categories": cats}
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes cannot take an empty list
            coco_dt = COCO()
            coco_dt.dataset = {"images": images, "annotations": [], "categories": cats}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
    return ev


def pycocotools_ap_with_max_dets(
    gts: list[GroundTruth], preds: list[Predictions], num_classes: int, max_dets: int
) -> float:
    prec = run_cocoeval(gts, preds, num_classes, (1, 2, max_dets)).eval["precision"]
    valid = prec[:, :, :, 0, 2][prec[:, :, :, 0, 2] > -1]
    return float(valid.mean()) if valid.size else math.nan


def pycocotools_stats(
    gts: list[GroundTruth], preds: list[Predictions], num_classes: int
) -> tuple[dict[str, float], np.ndarray]:
    """COCOeval's summary with difficult -> iscrowd=1; -1 results become nan."""
    ev = run_cocoeval(gts, preds, num_classes)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.summarize()
    stats = [math.nan if v < 0 else float(v) for v in ev.stats[:6]]
    prec = ev.eval["precision"][:, :, :, 0, 2]  # area all, maxDets 100
    per_class = np.array([prec[:, :, k][prec[:, :, k] > -1].mean() if (prec[:, :, k] > -1).any()
                          else math.nan for k in range(num_classes)])
    return dict(zip(KEYS, stats, strict=True)), per_class


def assert_close(ours: float, ref: float, tol: float = 1e-3) -> None:
    if math.isnan(ref):
        assert math.isnan(ours)
    else:
        assert abs(ours - ref) <= tol, (ours, ref)


@pytest.mark.parametrize(("seed", "score_step"), [(0, 0.0), (1, 0.0), (2, 0.0), (3, 0.1)])
def test_matches_pycocotools_on_random_cases(seed: int, score_step: float) -> None:
    gts, preds = random_case(seed, score_step=score_step)
    ours = coco_evaluate(gts, preds, num_classes=4)
    ref, ref_per_class = pycocotools_stats(gts, preds, 4)
    for key in KEYS:
        assert_close(ours.as_dict()[key], ref[key])
    for o, r in zip(ours.per_class_ap, ref_per_class, strict=True):
        assert_close(float(o), float(r))
    assert math.isnan(ours.per_class_ap[3])  # class without ground truth
    assert 0.0 < ours.ap < 1.0


def crowded_case(seed: int, num_images: int = 12) -> tuple[list[GroundTruth], list[Predictions]]:
    """Many overlapping objects of one or two classes, exact duplicate objects, duplicate
    detections and crowd regions: exercises ties and the matching order."""
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(num_images):
        n = int(rng.integers(4, 12))
        xy = rng.uniform(0, 60, size=(n, 2))
        wh = rng.uniform(20, 140, size=(n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        boxes[n // 2] = boxes[0]  # an exact duplicate object
        labels = rng.integers(0, 2, size=n)
        labels[n // 2] = labels[0]
        gts.append(GroundTruth(boxes, labels, rng.random(n) < 0.25))
        k = rng.integers(0, n, size=3 * n)
        d = boxes[k] + rng.normal(0, 6, size=(3 * n, 4))
        d[:, 2:] = np.maximum(d[:, 2:], d[:, :2] + 1.0)
        d[1] = d[0]  # an exact duplicate detection
        scores = np.round(rng.uniform(0.05, 1.0, size=3 * n), 2)
        preds.append(Predictions(d, scores, labels[k]))
    return gts, preds


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_pycocotools_on_crowded_scenes(seed: int) -> None:
    gts, preds = crowded_case(seed)
    ours = coco_evaluate(gts, preds, num_classes=2)
    ref, ref_per_class = pycocotools_stats(gts, preds, 2)
    for key in KEYS:
        assert_close(ours.as_dict()[key], ref[key])
    np.testing.assert_allclose(ours.per_class_ap, ref_per_class, atol=1e-3)
    # max_dets smaller than the number of detections per image and class
    small = coco_evaluate(gts, preds, num_classes=2, max_dets=5)
    assert small.ap < ours.ap
    assert_close(small.ap, pycocotools_ap_with_max_dets(gts, preds, 2, 5))


def test_matches_pycocotools_without_difficult_and_with_many_difficult() -> None:
    for rate in (0.0, 0.6):
        gts, preds = random_case(11, num_images=15, difficult_rate=rate)
        ours = coco_evaluate(gts, preds, num_classes=4).as_dict()
        ref, _ = pycocotools_stats(gts, preds, 4)
        for key in KEYS:
            assert_close(ours[key], ref[key])


def test_empty_detections() -> None:
    gts, _ = random_case(5, num_images=6)
    preds = [Predictions.empty() for _ in gts]
    ours = coco_evaluate(gts, preds, num_classes=4).as_dict()
    ref, _ = pycocotools_stats(gts, preds, 4)
    for key in KEYS:
        assert_close(ours[key], ref[key])
    assert ours["ap"] == 0.0


def test_perfect_detections_and_max_dets() -> None:
    gts, _ = random_case(7, num_images=8, difficult_rate=0.0)
    preds = [Predictions(g.boxes, np.linspace(1, 0.5, len(g.labels)), g.labels) for g in gts]
    assert coco_evaluate(gts, preds, num_classes=4).ap == pytest.approx(1.0)
    # With max_dets=1 per image and class only the top detection counts.
    one = coco_evaluate(gts, preds, num_classes=4, max_dets=1)
    assert one.ap < 1.0


def test_difficult_objects_are_ignore_regions() -> None:
    gt = GroundTruth(np.array([[0, 0, 100, 100], [200, 200, 300, 300]]), np.array([0, 0]),
                     np.array([False, True]))
    # A detection on the difficult object, one inside it (crowd IoU = 1), one true positive.
    pred = Predictions(np.array([[200, 200, 300, 300], [210, 210, 250, 250], [0, 0, 100, 100]]),
                       np.array([0.9, 0.8, 0.7]), np.array([0, 0, 0]))
    res = coco_evaluate([gt], [pred], num_classes=1)
    assert res.ap == pytest.approx(1.0)  # ignored detections cost nothing
    ref, _ = pycocotools_stats([gt], [pred], 1)
    assert_close(res.ap, ref["ap"])
    # Only a difficult object: the class has nothing to find -> nan (pycocotools: -1).
    only = GroundTruth(np.array([[0, 0, 50, 50]]), np.array([0]), np.array([True]))
    assert math.isnan(coco_evaluate([only], [pred], num_classes=1).ap)
