"""Class distillation: the soft quality-focal term against a plain loop, the frozen teacher,
and a run with --distill-from end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from model.config import get_preset
from tests.training.synthetic import (
    make_voc,
    run_tiny,
    save_random_weights,
    single_thread,
    tiny_args,
    tiny_batch,
)
from training.cli import resolve_config
from training.distill import build_teacher, soft_focal_distill
from training.loop import train_step
from training.trainer import Trainer

__all__ = ["single_thread"]


def _reference(student: list[float], teacher: list[float], gamma: float) -> float:
    """Sum of |p_s - p_t|^gamma * -(p_t log p_s + (1 - p_t) log(1 - p_s)), one value at a time."""
    total = 0.0
    for s, t in zip(student, teacher, strict=True):
        p_s, p_t = 1 / (1 + math.exp(-s)), 1 / (1 + math.exp(-t))
        bce = -(p_t * math.log(p_s) + (1 - p_t) * math.log(1 - p_s))
        total += abs(p_s - p_t) ** gamma * bce
    return total


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gamma", [2.0, 1.0])
def test_soft_focal_distill_matches_a_plain_loop(seed: int, gamma: float) -> None:
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(2, 7, 3, generator=g, dtype=torch.float64) * 3
    teacher = torch.randn(2, 7, 3, generator=g, dtype=torch.float64) * 3
    got = soft_focal_distill(student, teacher, gamma).item()
    want = _reference(student.flatten().tolist(), teacher.flatten().tolist(), gamma)
    assert got == pytest.approx(want, rel=1e-5)


def test_soft_focal_distill_is_zero_where_they_agree_and_empty_inputs_give_zero() -> None:
    logits = torch.tensor([[-6.0, 0.0, 4.0]])
    assert soft_focal_distill(logits, logits.clone()).item() == 0.0
    assert soft_focal_distill(torch.zeros(0, 20), torch.zeros(0, 20)).item() == 0.0


def test_soft_focal_distill_moves_the_student_only_towards_the_teacher() -> None:
    student = torch.tensor([[-3.0, 2.0]], requires_grad=True)
    teacher = torch.tensor([[1.0, -1.0]], requires_grad=True)
    soft_focal_distill(student, teacher).backward()
    assert teacher.grad is None  # the teacher is detached
    assert student.grad is not None
    assert student.grad[0, 0] < 0 < student.grad[0, 1]  # descent raises logit 0, lowers logit 1


def test_build_teacher_is_frozen_in_eval_mode_with_the_file_weights(tmp_path: Path) -> None:
    source = save_random_weights(tmp_path / "t.pt", seed=5, classes=("red", "green"), half=True)
    teacher = build_teacher(source.cfg, tmp_path / "t.pt", torch.device("cpu"))
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, source.state_dict()[name].half().float()), name
    other = get_preset("tiny", class_names=("cat", "dog"))
    with pytest.raises(ValueError, match="classes"):
        build_teacher(other, tmp_path / "t.pt", torch.device("cpu"))


def _teacher_file(path: Path) -> None:
    save_random_weights(path, seed=11, classes=("red", "green"), half=True, epoch=9)


def test_train_step_adds_the_weighted_distillation_term(
    tmp_path: Path, single_thread: None
) -> None:
    make_voc(tmp_path / "data" / "VOC", num_images=2, seed=4)
    _teacher_file(tmp_path / "t.pt")
    images, boxes, labels = tiny_batch()
    plain = Trainer(resolve_config(tiny_args(tmp_path / "data", tmp_path / "a")))
    assert plain.ctx.teacher is None
    total, cls, box, ctr, kd = train_step(plain.ctx, plain.ctx.normalize(images), boxes, labels)
    assert kd.item() == 0.0 and total.item() == pytest.approx((cls + box + ctr).item(), rel=1e-5)

    args = tiny_args(tmp_path / "data", tmp_path / "b", "--distill-from", str(tmp_path / "t.pt"),
                     "--distill-weight", "2.5")  # fmt: skip
    student = Trainer(resolve_config(args))
    assert student.ctx.teacher is not None and student.ctx.distill_weight == 2.5
    before = {k: v.clone() for k, v in student.ctx.teacher.state_dict().items()}
    total, cls, box, ctr, kd = train_step(student.ctx, student.ctx.normalize(images), boxes, labels)
    assert kd.item() > 0
    assert total.item() == pytest.approx((cls + box + ctr + 2.5 * kd).item(), rel=1e-5)
    for name, value in student.ctx.teacher.state_dict().items():
        assert torch.equal(value, before[name]), name  # the step leaves the teacher alone


def test_a_distilled_run_logs_the_term_and_saves_the_flag(
    tmp_path: Path, single_thread: None
) -> None:
    _teacher_file(tmp_path / "t.pt")
    run = run_tiny(tmp_path, "--distill-from", str(tmp_path / "t.pt"))
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r.get("type") == "epoch"]
    assert epochs and epochs[-1]["kd"] > 0
    final = torch.load(run / "final.pt", weights_only=False)
    assert final["train_config"]["distill_from"] == str(tmp_path / "t.pt")


def test_a_negative_distill_weight_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="distill_weight"):
        resolve_config(tiny_args(tmp_path / "data", tmp_path / "run", "--distill-weight", "-1"))
