"""--time-budget-min: the epoch count is fixed after the probe epochs and the run keeps to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.training.synthetic import make_voc, tiny_args
from training.cli import main, resolve_config
from training.engine.budget import PROBE_EPOCHS


def _records(run: Path, kind: str) -> list[dict]:
    lines = (run / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


@pytest.mark.parametrize("budget_min", ["60"])
def test_budget_fixes_the_epoch_count_once(
    tmp_path: Path, single_thread: None, budget_min: str
) -> None:
    make_voc(tmp_path / "data" / "VOC", num_images=4, seed=2)
    run = tmp_path / "run"
    args = tiny_args(tmp_path / "data", run, "--epochs", "5", "--warmup-epochs", "2",
                     "--warmup-iters", "0", "--time-budget-min", budget_min)  # fmt: skip
    assert main(args) == 0
    (plan,) = _records(run, "plan")
    planned = plan["epochs"]
    assert plan["epoch"] == PROBE_EPOCHS
    # An hour is far more than 5 tiny epochs need: the ceiling.
    assert planned == 5
    assert [r["epoch"] for r in _records(run, "epoch")] == list(range(1, planned + 1))
    final = torch.load(run / "final.pt", weights_only=False)
    assert final["epoch"] == planned and final["train_config"]["epochs"] == planned
    assert final["scheduler"]["total_iters"] == planned * 2  # 4 images, batch 2


def test_an_epoch_that_would_overrun_the_budget_stops_early(
    tmp_path: Path, single_thread: None
) -> None:
    make_voc(tmp_path / "data" / "VOC", num_images=8, seed=2)
    run = tmp_path / "run"
    assert main(tiny_args(tmp_path / "data", run, "--epochs", "5",
                          "--time-budget-min", "0.0001")) == 0  # 6 ms: one step  # fmt: skip
    (plan,) = _records(run, "plan")
    assert plan["reason"] == "deadline" and plan["epoch"] == plan["epochs"] == 1
    (epoch,) = _records(run, "epoch")
    assert epoch["epoch"] == 1 and epoch["iters"] == 1  # of 4
    final = torch.load(run / "final.pt", weights_only=False)
    assert final["epoch"] == 1 and final["train_config"]["epochs"] == 1
    assert (run / "weights_fp16.pt").exists()


def test_time_spent_before_training_counts_in_the_budget(
    tmp_path: Path, single_thread: None
) -> None:
    # A minute's budget of which the auto recipe's speed probe already took 59.99 s: the first
    # step overruns what is left, so the run ends after it.
    make_voc(tmp_path / "data" / "VOC", num_images=8, seed=2)
    run = tmp_path / "run"
    assert main(tiny_args(tmp_path / "data", run, "--epochs", "5", "--time-budget-min", "1",
                          "--budget-spent-s", "59.99")) == 0  # fmt: skip
    (plan,) = _records(run, "plan")
    assert plan["reason"] == "deadline" and plan["epoch"] == 1
    (epoch,) = _records(run, "epoch")
    assert epoch["iters"] == 1 and epoch["data_s"] >= 0.0


def test_budget_is_not_taken_from_a_checkpoint(tmp_path: Path) -> None:
    make_voc(tmp_path / "data" / "VOC", num_images=4, seed=2)
    run = tmp_path / "run"
    assert main(tiny_args(tmp_path / "data", run, "--epochs", "3", "--stop-epoch", "1",
                          "--time-budget-min", "60")) == 0  # fmt: skip
    cfg = resolve_config(["--resume", str(run / "last.pt")])
    assert cfg.time_budget_min == 0.0 and cfg.epochs == 3


def test_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="time_budget_min"):
        resolve_config(["--time-budget-min", "-1"])
