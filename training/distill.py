"""Classification distillation from a frozen teacher (`--distill-from`, `--distill-weight`).

The teacher (a copy of the run's architecture, loaded from a checkpoint or weights file and
kept in eval mode) sees the same augmented batch as the student. Its class probabilities at
every location are soft targets for the student's class logits, with the quality-focal
modulation of Li et al. (GFL, 2020):

    kd = sum over locations and classes of |p_s - p_t| ** gamma * BCE(logit_s, p_t) / num_pos

num_pos is the FCOS loss's normaliser (positive locations, world mean, >= 1), so the term is
on the scale of the focal loss. The soft targets carry the teacher's class similarities
(a dog that looks a little like a cat) and its scores away from the labelled centres,
which one-hot targets do not.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from model.config import ModelConfig
from model.fcos import FCOS
from training.checkpointing import load_init_weights


def soft_focal_distill(
    student_logits: Tensor, teacher_logits: Tensor, gamma: float = 2.0
) -> Tensor:
    """Summed quality-focal BCE of (..., C) student logits against sigmoid((..., C) teacher).

    Zero where the two agree; float32 throughout; no gradient reaches the teacher.
    """
    s = student_logits.float()
    p_t = torch.sigmoid(teacher_logits.detach().float())
    p_s = torch.sigmoid(s)
    bce = F.binary_cross_entropy_with_logits(s, p_t, reduction="none")
    return ((p_s - p_t).abs().pow(gamma) * bce).sum()


def build_teacher(cfg: ModelConfig, path: str | Path, device: torch.device) -> FCOS:
    """A frozen FCOS in eval mode with the (EMA) weights of `path`; classes must match `cfg`."""
    teacher = FCOS(cfg)
    load_init_weights(teacher, path)
    teacher.eval().requires_grad_(False)
    return teacher.to(device)
