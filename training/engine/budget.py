"""Fit a schedule to a wall-clock budget (time-sliced GPU leases, a fixed slot on a shared box).

With `--time-budget-min M`, the trainer runs `--probe-epochs` epochs (default PROBE_EPOCHS),
times the last of them (with 2, the first pays for worker start-up, cache warm-up and cuDNN
autotuning; the fine-tuning recipe probes 1, as its CPU epochs are minutes long) and one
validation, and then fixes the epoch count so that the whole fit ends within M minutes. The
count is fixed once, while the learning rate is still in warm-up (use --warmup-epochs >=
--probe-epochs), so the cosine is then exactly the one a plain `--epochs N` run would get;
`--epochs` is the ceiling.
The planned count is written into the run's train_config, so `--resume` continues the same plan.
"""

from __future__ import annotations

PROBE_EPOCHS = 2
# Share of the remaining budget kept back for the end of the run (final checkpoint, weights,
# plots) and for epoch-to-epoch jitter.
RESERVE = 0.04


def plan_epochs(
    remaining_s: float, done_epochs: int, epoch_s: float, eval_s: float, eval_interval: int,
    max_epochs: int, reserve: float = RESERVE,
) -> int:  # fmt: skip
    """Total epochs (counting the `done_epochs` already run) that fit in `remaining_s`.

    Each further epoch costs `epoch_s`; every `eval_interval`-th epoch and the last one also
    cost `eval_s` (eval_s = 0 when there is no validation). Never below `done_epochs`, never
    above `max_epochs`.
    """
    if epoch_s <= 0:
        raise ValueError(f"epoch_s must be positive, got {epoch_s}")
    usable = max(0.0, remaining_s * (1.0 - reserve))
    interval = max(1, eval_interval)
    best = done_epochs
    # The cost is monotone in the epoch count: step up while the next count still fits.
    for total in range(done_epochs + 1, max_epochs + 1):
        extra = total - done_epochs
        evals = (total - 1) // interval - done_epochs // interval + 1  # the last one too
        cost = extra * epoch_s + (evals * eval_s if eval_s > 0 else 0.0)
        if cost > usable:
            break
        best = total
    return best
