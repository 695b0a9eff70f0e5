"""--init-classes similar: start each new class's logit row from the source class it resembles.

Fine-tuning across class lists (training/engine/transfer.py) keeps the logit rows of classes
matched by name and starts every other class afresh (weights N(0, 0.01), bias at the prior).
Here the *source* model (the --init-weights file with its own head and classes) is first run
over a few training images instead: plain letterboxed images at the training's input size, no
augmentation, eval mode. For every class of this run, its sigmoid class probabilities are
averaged over the *positive locations* of its ground-truth boxes, positive as the loss means
it (training/engine/targets.py: the same strides, size ranges and centre sampling). A new
class whose best source class k* reaches `threshold` takes k*'s row (weight and bias of
head.cls_logits); several new classes may take the same row. The others stay fresh.

The threshold, 0.05: a fresh row says the prior, 0.01, everywhere; a source class answering
at five times that on a class's objects, on average over all their positive locations, has
learnt something those objects share (on the proxy set of configs/finetune.md the bundled
model's person row averages 0.50 on person boxes, car 0.33 on vehicle boxes, chair 0.35 on
furniture). Far below that the best match is noise, and its row would start the class with
another class's confident detections where this class has none.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from model.checkpoint import load_model
from model.fcos import FCOS
from training.data import DetectionDataset, Sample, collate
from training.engine.targets import DEFAULT_RANGES, batch_targets, make_points
from training.engine.transfer import CLASS_ROWS

THRESHOLD = 0.05  # mean probability a source class needs to lend its row (module docstring)


@dataclass
class ClassAffinity:
    """What the source model says about this run's classes' objects."""

    target_classes: tuple[str, ...]
    source_classes: tuple[str, ...]
    mean_prob: torch.Tensor  # (T, K) mean sigmoid probability of source class k on class t
    positives: torch.Tensor  # (T,) int64 positive locations of class t in the probed images
    images: int
    seconds: float


def probe_images(
    samples: Sequence[Sample], classes: Sequence[int], max_images: int, seed: int = 0
) -> list[Sample]:
    """Up to `max_images` samples holding `classes` (target ids), a fixed choice for `seed`:
    round-robin over the classes (a rare class gets its images as much as a common one), each
    class taking its next not-yet-chosen image in one seeded shuffle of the samples."""
    order = np.random.default_rng(seed).permutation(len(samples))
    per_class = {c: [int(i) for i in order if (samples[i].labels == c).any()] for c in classes}
    chosen: list[int] = []
    taken: set[int] = set()
    while len(chosen) < max_images and any(per_class.values()):
        for c in classes:
            queue = per_class[c]
            while queue and queue[0] in taken:
                queue.pop(0)
            if queue and len(chosen) < max_images:
                taken.add(queue[0])
                chosen.append(queue.pop(0))
    return [samples[i] for i in sorted(chosen)]


@torch.inference_mode()
def probe_class_affinity(
    source: FCOS,
    samples: Sequence[Sample],
    target_classes: Sequence[str],
    input_size: int,
    center_radius: float | None = 1.5,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
) -> ClassAffinity:
    """Mean source-class probabilities over each target class's positive locations in
    `samples` (labels index `target_classes`), the source model in eval mode on `device`."""
    t0 = time.perf_counter()
    cfg = source.cfg
    was_training = source.training
    source.eval()
    num_t, num_k = len(target_classes), cfg.num_classes
    sums = torch.zeros((num_t, num_k), dtype=torch.float64)  # (T, K)
    counts = torch.zeros(num_t, dtype=torch.int64)  # (T,)
    data = DetectionDataset(samples, input_size, cfg.mean, cfg.std, augment=None)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate)
    points = make_points(input_size, input_size, cfg.strides, device, DEFAULT_RANGES)
    for images, boxes, labels in loader:
        logits = source(images.to(device))[0]  # (B, P, K)
        cls_t, _, _ = batch_targets(*points, boxes, labels, center_radius)  # (B, P)
        pos = cls_t >= 0  # (B, P)
        probs = logits[pos].float().sigmoid().double().cpu()  # (N, K)
        ids = cls_t[pos].cpu()  # (N,)
        sums.index_add_(0, ids, probs)
        counts.index_add_(0, ids, torch.ones_like(ids))
    source.train(was_training)
    mean = sums / counts.clamp(min=1)[:, None].double()
    return ClassAffinity(tuple(target_classes), tuple(cfg.class_names), mean.float(), counts,
                         len(samples), time.perf_counter() - t0)  # fmt: skip


@dataclass
class RowChoice:
    target: str
    source: str | None  # the source class whose row was copied; None: kept fresh
    best: str  # the best-matching source class (even when below the threshold)
    mean_prob: float
    positives: int

    def describe(self) -> str:
        if self.positives == 0:
            return f"{self.target}: fresh (no positive locations in the probed images)"
        if self.source is not None:
            return (f"{self.target} <- {self.source} (mean p {self.mean_prob:.2f} over "
                    f"{self.positives} positive locations)")  # fmt: skip
        return f"{self.target}: fresh (best {self.best} {self.mean_prob:.2f})"


@torch.no_grad()
def init_similar_rows(
    model: FCOS,
    source_state: dict[str, torch.Tensor],
    affinity: ClassAffinity,
    new_classes: Sequence[str],
    threshold: float = THRESHOLD,
) -> list[RowChoice]:
    """Copy into each of `new_classes`' rows of `model`'s class logits the row of its best
    source class when that reaches `threshold`; returns the choices, in `new_classes` order."""
    target = model.state_dict()
    choices = []
    for name in new_classes:
        t = affinity.target_classes.index(name)
        k = int(affinity.mean_prob[t].argmax())
        p, n = float(affinity.mean_prob[t, k]), int(affinity.positives[t])
        copy = n > 0 and p >= threshold
        if copy:
            j = list(model.cfg.class_names).index(name)
            for key in CLASS_ROWS:
                target[key][j].copy_(source_state[key][k])
        choices.append(RowChoice(name, affinity.source_classes[k] if copy else None,
                                 affinity.source_classes[k], p, n))  # fmt: skip
    return choices


def summary(choices: Sequence[RowChoice], affinity: ClassAffinity, threshold: float) -> str:
    """The transfer summary's line for --init-classes similar."""
    probe = f"probe: {affinity.images} images, {affinity.seconds:.1f}s"
    head = f"  then new classes' rows from the most similar source class (mean p >= {threshold:g}; "
    head += f"{probe}): "
    return head + "; ".join(c.describe() for c in choices)


def similar_class_init(
    model: FCOS,
    init_weights: str,
    samples: Sequence[Sample],
    center_radius: float | None = 1.5,
    max_images: int = 128,
    seed: int = 0,
    device: torch.device | str = "cpu",
    threshold: float = THRESHOLD,
) -> tuple[str, float] | None:
    """--init-classes similar, after load_init_weights: the probe and the row copies for the
    classes of `model` that `init_weights` lacks by name. Returns (the summary line, seconds
    spent), or None when there is nothing to do (the same classes, no new class, or another
    head width)."""
    t0 = time.perf_counter()
    source, _ = load_model(init_weights)
    have, want = tuple(source.cfg.class_names), tuple(model.cfg.class_names)
    new = [name for name in want if name not in have]
    mine, theirs = model.state_dict(), source.state_dict()
    same_width = all(theirs[k].shape[1:] == mine[k].shape[1:] for k in CLASS_ROWS)
    if not have or have == want or not new or not same_width:
        return None
    picked = probe_images(samples, [want.index(n) for n in new], max_images, seed)
    affinity = probe_class_affinity(source.to(device), picked, want, model.cfg.input_size,
                                    center_radius, device=device)  # fmt: skip
    choices = init_similar_rows(model, source.cpu().state_dict(), affinity, new, threshold)
    seconds = time.perf_counter() - t0
    affinity.seconds = seconds
    return summary(choices, affinity, threshold), seconds
