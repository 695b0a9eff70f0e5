"""One training epoch: device transfer, on-device normalisation, autocast, step, EMA, logging.

Built to keep the GPU busy: uint8 batches move with non_blocking copies from pinned memory
and are normalised on the device; bf16 autocast and channels_last on CUDA; loss values are
accumulated on the device and read back (a host sync) only every `log_interval` steps.
On CPU the same code runs in float32.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from training.data.hsv_device import hsv_jitter_batch
from training.engine.ema import ModelEMA
from training.engine.losses import FCOSLoss
from training.engine.runlog import RunLog
from training.engine.schedule import WarmupCosine
from training.engine.targets import pad_targets

LOSS_KEYS = ("total", "cls", "box", "ctr")
Tensors3 = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class TrainForward(nn.Module):
    """Makes `forward_train` the module's forward, so DDP and torch.compile wrap it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model.forward_train(images)  # type: ignore[operator]


@dataclass
class StepContext:
    """Everything an epoch needs; built once by the trainer."""

    model: nn.Module  # the bare FCOS (its parameters are the ones optimised)
    forward: nn.Module  # TrainForward, possibly wrapped in DDP and/or torch.compile
    loss_fn: FCOSLoss
    optimizer: torch.optim.Optimizer
    scheduler: WarmupCosine
    ema: ModelEMA | None
    device: torch.device
    normalize: Callable[[torch.Tensor], torch.Tensor]  # uint8 (B,3,H,W) on device -> float
    amp: bool = False  # bf16 autocast (CUDA)
    channels_last: bool = False
    grad_clip: float = 0.0
    world_size: int = 1
    log_interval: int = 20
    progress: bool = False
    is_main: bool = True
    log: RunLog | None = None
    params: list[nn.Parameter] = field(default_factory=list)
    # time.perf_counter() value after which the epoch stops early (--time-budget-min, one
    # process only: DDP ranks stop at epoch ends); None = run every iteration.
    deadline: float | None = None


def use_autocast(device: torch.device, amp: bool, cpu_amp: bool) -> bool:
    """bf16 autocast: on CUDA when `amp`; on CPU only when `cpu_amp` asks for it too."""
    return amp and (device.type == "cuda" or cpu_amp)


def batch_to_device(batch: Any, ctx: StepContext) -> Tensors3:
    """A loader batch -> normalised images (B, 3, H, W), boxes (B, M, 4), labels (B, M).

    The targets are padded on the host (training.engine.targets.pad_targets) and move in two copies,
    where per-image tensors took 2 B. A batch with a 4th element, (B, 3) HSV gains drawn by the
    loader (--hsv-on device), gets its colour jitter here, before normalising.
    """
    images = batch[0].to(ctx.device, non_blocking=True)
    if len(batch) > 3:
        images = hsv_jitter_batch(images, batch[3].to(ctx.device, non_blocking=True))
    if ctx.channels_last:  # reorder the uint8 batch (1 byte/px); normalising keeps the format
        images = images.contiguous(memory_format=torch.channels_last)
    images = ctx.normalize(images)
    boxes, labels = pad_targets(batch[1], batch[2], "cpu")  # (B, M, 4), (B, M) -1 = padding
    return images, boxes.to(ctx.device, non_blocking=True), labels.to(ctx.device, non_blocking=True)


def train_step(
    ctx: StepContext,
    images: torch.Tensor,
    boxes: Sequence[torch.Tensor] | torch.Tensor,
    labels: Sequence[torch.Tensor] | torch.Tensor,
) -> torch.Tensor:
    """One optimisation step; returns the detached (4,) [total, cls, box, ctr] losses.

    boxes and labels: per-image lists or padded tensors (training.engine.targets.pad_targets).
    """
    ctx.scheduler.apply(ctx.optimizer)
    with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=ctx.amp):
        cls, box, ctr = ctx.forward(images)
    losses = ctx.loss_fn(cls, box, ctr, boxes, labels, tuple(images.shape[-2:]))
    ctx.optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    if ctx.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(ctx.params, ctx.grad_clip)
    ctx.optimizer.step()
    ctx.scheduler.step()
    if ctx.ema is not None:
        ctx.ema.update(ctx.model)
    return torch.stack([losses[k].detach() for k in LOSS_KEYS])


def _progress(ctx: StepContext, epoch: int, epochs: int, total: int) -> Any:
    if not (ctx.progress and ctx.is_main and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"epoch {epoch}/{epochs}", dynamic_ncols=True, leave=True)


def train_one_epoch(
    ctx: StepContext, loader: Iterable, epoch: int, epochs: int, iters_per_epoch: int
) -> dict[str, float]:
    """Run one epoch (`epoch` counts from 1); returns mean losses, lr, img/s, time, the time
    spent waiting for the loader (data_s) and the iterations run (fewer than `iters_per_epoch`
    when `ctx.deadline` passed)."""
    ctx.model.train()
    bar = _progress(ctx, epoch, epochs, iters_per_epoch)
    sums = torch.zeros(len(LOSS_KEYS), device=ctx.device)
    window = torch.zeros(len(LOSS_KEYS), device=ctx.device)
    n_iter = n_images = win_iter = win_images = 0
    start = win_start = waited = time.perf_counter()
    data_s = 0.0  # spent waiting for the loader (decode, augmentation not hidden by the step)
    lr = ctx.scheduler.lr()
    for i, batch in enumerate(loader):
        data_s += time.perf_counter() - waited
        images, boxes, labels = batch_to_device(batch, ctx)
        lr = ctx.scheduler.lr()
        step_losses = train_step(ctx, images, boxes, labels)
        sums += step_losses
        window += step_losses
        batch_images = int(images.shape[0]) * ctx.world_size
        n_iter, n_images = n_iter + 1, n_images + batch_images
        win_iter, win_images = win_iter + 1, win_images + batch_images
        last = i + 1 == iters_per_epoch
        if win_iter == ctx.log_interval or last:
            values = (window / win_iter).tolist()  # host sync, once per log interval
            if not math.isfinite(values[0]):
                raise FloatingPointError(f"non-finite loss at epoch {epoch}, iter {i + 1}")
            now = time.perf_counter()
            img_s = win_images / max(now - win_start, 1e-9)
            record = {
                "type": "iter",
                "epoch": epoch,
                "iter": i + 1,
                "iters_per_epoch": iters_per_epoch,
                "lr": lr,
                "img_s": img_s,
                **dict(zip(LOSS_KEYS, values, strict=True)),
            }
            if ctx.log is not None and ctx.is_main:
                ctx.log.write(record)
            if bar is not None:
                bar.set_postfix(
                    loss=f"{values[0]:.3f}", cls=f"{values[1]:.3f}", box=f"{values[2]:.3f}",
                    ctr=f"{values[3]:.3f}", lr=f"{lr:.2e}", img_s=f"{img_s:.1f}",
                    refresh=False,
                )  # fmt: skip
            window.zero_()
            win_iter = win_images = 0
            win_start = now
        if bar is not None:
            bar.update(1)
        waited = time.perf_counter()
        if ctx.deadline is not None and not last and waited > ctx.deadline:
            break  # out of time: the trainer ends the run with this epoch
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - start
    means = (sums / max(n_iter, 1)).tolist()
    return {
        **dict(zip(LOSS_KEYS, means, strict=True)),
        "lr": lr,
        "img_s": n_images / max(elapsed, 1e-9),
        "time_s": elapsed,
        "data_s": data_s,
        "iters": n_iter,
    }
