"""Metric test references shared by the metric tests: a random detection case and a plain-loop
VOC AP (the devkit's algorithm), both NumPy only."""

from __future__ import annotations

import math

import numpy as np

from training.metrics import GroundTruth, Predictions, all_point_ap


def random_case(
    seed: int,
    num_images: int = 25,
    num_classes: int = 4,
    difficult_rate: float = 0.15,
    score_step: float = 0.0,
) -> tuple[list[GroundTruth], list[Predictions]]:
    """Objects of all sizes; detections jittered around them, duplicates, wrong classes, noise.

    The last class never has ground truth (only false positives). `score_step` > 0 rounds
    the scores to create ties (sort stability must match)."""
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(num_images):
        w, h = rng.integers(200, 640, size=2)
        n = int(rng.integers(0, 7))
        size = np.exp(rng.uniform(np.log(8), np.log(300), size=(n, 2)))
        size = np.minimum(size, [w - 1, h - 1])
        x1 = rng.uniform(0, w - size[:, 0])
        y1 = rng.uniform(0, h - size[:, 1])
        boxes = np.stack([x1, y1, x1 + size[:, 0], y1 + size[:, 1]], axis=1)
        labels = rng.integers(0, num_classes - 1, size=n)
        difficult = rng.random(n) < difficult_rate
        gts.append(GroundTruth(boxes, labels, difficult))
        d_boxes, d_scores, d_labels = [], [], []
        for b, lab, s in zip(boxes, labels, size, strict=True):
            for _ in range(int(rng.integers(0, 4))):  # 0..3 detections per object
                jitter = rng.normal(0, rng.uniform(0.01, 0.2), size=4) * np.r_[s, s]
                d_boxes.append(b + jitter)
                wrong = rng.random() < 0.1
                d_labels.append(int(rng.integers(0, num_classes)) if wrong else int(lab))
                d_scores.append(rng.uniform(0.05, 1.0))
        for _ in range(int(rng.integers(0, 6))):  # background false positives
            s = np.exp(rng.uniform(np.log(6), np.log(250), size=2))
            x, y = rng.uniform(0, w - 5), rng.uniform(0, h - 5)
            d_boxes.append(np.r_[x, y, x + s[0], y + s[1]])
            d_labels.append(int(rng.integers(0, num_classes)))
            d_scores.append(rng.uniform(0.05, 0.7))
        d = np.asarray(d_boxes, dtype=np.float64).reshape(-1, 4)
        d[:, 2:] = np.maximum(d[:, 2:], d[:, :2] + 1.0)
        sc = np.asarray(d_scores)
        if score_step:
            sc = np.round(sc / score_step) * score_step
        preds.append(Predictions(d, sc, np.asarray(d_labels, np.int64)))
    return gts, preds


def reference_voc(gts: list[GroundTruth], preds: list[Predictions], num_classes: int
                  ) -> np.ndarray:
    """Straight loop in the style of the devkit (continuous coordinates, >= .5)."""
    aps = []
    for c in range(num_classes):
        dets = [(s, i, b) for i, p in enumerate(preds)
                for b, s, lab in zip(p.boxes, p.scores, p.labels, strict=True) if lab == c]
        dets.sort(key=lambda t: -t[0])
        used = [np.zeros(int((g.labels == c).sum()), bool) for g in gts]
        npos = sum(int(((g.labels == c) & ~g.difficult).sum()) for g in gts)
        tp, fp = [], []
        for _, i, b in dets:
            gb, gd = gts[i].boxes[gts[i].labels == c], gts[i].difficult[gts[i].labels == c]
            best, jbest = -1.0, -1
            for j, g in enumerate(gb):
                iw = min(b[2], g[2]) - max(b[0], g[0])
                ih = min(b[3], g[3]) - max(b[1], g[1])
                if iw > 0 and ih > 0:
                    inter = iw * ih
                    u = (b[2] - b[0]) * (b[3] - b[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
                    if inter / u > best:
                        best, jbest = inter / u, j
            if best >= 0.5:
                if gd[jbest]:
                    continue
                if not used[i][jbest]:
                    used[i][jbest] = True
                    tp.append(1)
                    fp.append(0)
                    continue
            tp.append(0)
            fp.append(1)
        if npos == 0:
            aps.append(math.nan)
            continue
        tpc, fpc = np.cumsum(tp), np.cumsum(fp)
        rec = tpc / npos
        prec = tpc / np.maximum(tpc + fpc, 1e-12)
        aps.append(all_point_ap(rec, prec) if len(tp) else 0.0)
    return np.array(aps)
