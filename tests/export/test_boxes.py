"""NMS and IoU against plain reference loops."""

from __future__ import annotations

import numpy as np
import pytest

from export.boxes import batched_nms, box_iou, nms


def iou_ref(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms_ref(boxes: np.ndarray, scores: np.ndarray, thr: float, max_keep: int | None) -> list[int]:
    """The textbook loop: take the best remaining box, drop everything overlapping it."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    suppressed = [False] * len(scores)
    keep: list[int] = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        if max_keep is not None and len(keep) == max_keep:
            break
        for j in order[pos + 1 :]:
            if not suppressed[j] and iou_ref(list(boxes[i]), list(boxes[j])) > thr:
                suppressed[j] = True
    return keep


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 100, size=(n, 2))
    wh = rng.uniform(1, 40, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.6, 0.9])
def test_nms_matches_reference_loop(seed: int, thr: float) -> None:
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 200)
    scores = rng.random(200).astype(np.float32)
    assert nms(boxes, scores, thr).tolist() == nms_ref(boxes, scores, thr, None)
    assert nms(boxes, scores, thr, max_keep=7).tolist() == nms_ref(boxes, scores, thr, 7)


def test_nms_ties_keep_lower_index_first() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.5, 0.5, 0.5], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]
    rng = np.random.default_rng(7)
    b = random_boxes(rng, 60)
    s = np.round(rng.random(60), 1).astype(np.float32)  # many exact ties
    assert nms(b, s, 0.5).tolist() == nms_ref(b, s, 0.5, None)


def test_nms_empty_input() -> None:
    keep = nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 0.5)
    assert keep.shape == (0,) and keep.dtype == np.int64
    keep = batched_nms(np.zeros((0, 4)), np.zeros((0,)), np.zeros((0,), np.int64), 0.5, 10)
    assert keep.shape == (0,)


@pytest.mark.parametrize("seed", [0, 1])
def test_batched_nms_is_per_class(seed: int) -> None:
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 150)
    scores = rng.random(150).astype(np.float32)
    classes = rng.integers(0, 4, 150)
    got = batched_nms(boxes, scores, classes, 0.5)
    expected: list[int] = []
    for c in range(4):
        idx = np.flatnonzero(classes == c)
        expected += [int(idx[k]) for k in nms_ref(boxes[idx], scores[idx], 0.5, None)]
    expected.sort(key=lambda i: (-scores[i], i))
    assert got.tolist() == expected
    assert batched_nms(boxes, scores, classes, 0.5, max_keep=5).tolist() == expected[:5]


def test_box_iou_matches_reference() -> None:
    rng = np.random.default_rng(3)
    a, b = random_boxes(rng, 9), random_boxes(rng, 7)
    got = box_iou(a, b)
    for i in range(9):
        for j in range(7):
            assert got[i, j] == pytest.approx(iou_ref(list(a[i]), list(b[j])), abs=1e-6)
