"""training.engine.budget.plan_epochs against a plain simulation of the run it plans."""

from __future__ import annotations

import pytest

from training.engine.budget import plan_epochs


def simulated_cost(done: int, total: int, epoch_s: float, eval_s: float, interval: int) -> float:
    """Seconds epochs done+1..total take: each epoch, plus a validation on every interval-th
    epoch and on the last one (counted once)."""
    cost = 0.0
    for epoch in range(done + 1, total + 1):
        cost += epoch_s
        if eval_s > 0 and (epoch % interval == 0 or epoch == total):
            cost += eval_s
    return cost


def reference_plan(remaining: float, done: int, epoch_s: float, eval_s: float, interval: int,
                   max_epochs: int, reserve: float) -> int:  # fmt: skip
    usable = remaining * (1 - reserve)
    fits = [done]
    for total in range(done + 1, max_epochs + 1):
        if simulated_cost(done, total, epoch_s, eval_s, interval) <= usable:
            fits.append(total)
    return max(fits)


@pytest.mark.parametrize(
    ("remaining", "done", "epoch_s", "eval_s", "interval", "max_epochs"),
    [
        (492.0, 2, 4.27, 10.15, 30, 1000),  # the GPU run of stage 7: planned 95 epochs
        (100.0, 2, 10.0, 0.0, 5, 1000),
        (100.0, 2, 10.0, 7.0, 1, 1000),
        (100.0, 2, 10.0, 7.0, 4, 6),
        (5.0, 2, 10.0, 1.0, 3, 50),
        (0.0, 2, 1.0, 1.0, 3, 50),
        (-30.0, 3, 1.0, 0.0, 3, 50),
        (1e6, 0, 0.5, 2.0, 7, 40),
    ],
)
def test_plan_matches_a_plain_simulation(
    remaining: float, done: int, epoch_s: float, eval_s: float, interval: int, max_epochs: int
) -> None:
    got = plan_epochs(remaining, done, epoch_s, eval_s, interval, max_epochs, reserve=0.04)
    assert got == reference_plan(remaining, done, epoch_s, eval_s, interval, max_epochs, 0.04)


def test_golden_plan_of_the_gpu_run() -> None:
    # log.jsonl of stage 7: 492 s budget, 35.4 s spent after 2 epochs of 4.27 s, val 10.15 s.
    assert plan_epochs(492.0 - 35.4, 2, 4.2727, 10.1536, 30, 1000) == 95


def test_plan_is_bounded() -> None:
    assert plan_epochs(1e9, 2, 1.0, 1.0, 1, 10) == 10  # the ceiling
    assert plan_epochs(0.5, 4, 1.0, 0.0, 1, 10) == 4  # nothing more fits: stop now
    with pytest.raises(ValueError):
        plan_epochs(10.0, 2, 0.0, 0.0, 1, 10)
