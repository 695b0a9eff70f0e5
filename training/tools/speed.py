"""Training-step throughput on synthetic batches (no data loading): the model side's img/s.

    python -m training.tools.speed --preset r18-gn --size 512 --batch-size 8 --iters 5
    python -m training.tools.speed --preset r18-gn --batch-size 32 --iters 50 --compile   # on a GPU
    python -m training.tools.speed --preset r18-gn-lite --size 384 --batch-size 64 --count-ops

Runs the trainer's own step (training.engine.loop.train_step: bf16 autocast + channels_last on
CUDA, loss, backward, clip, AdamW, EMA). Compare with the img/s in a run's log.jsonl: if
that is much lower, the data pipeline (workers, --cache-images) is the bottleneck.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from model.config import get_preset
from model.fcos import FCOS
from training.config import HSV_PLACES, TrainConfig
from training.data.color import draw_hsv
from training.data.loaders import device_normalizer, hsv_place_is_device
from training.engine.distributed import configure_cuda, pick_device
from training.engine.ema import ModelEMA
from training.engine.loop import (
    StepContext,
    TrainForward,
    batch_to_device,
    train_step,
    use_autocast,
)
from training.engine.losses import FCOSLoss
from training.engine.optim import build_optimizer
from training.engine.schedule import WarmupCosine


def synthetic_batch(
    batch: int, size: int, num_classes: int, gen: torch.Generator
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=gen)
    boxes, labels = [], []
    for _ in range(batch):
        n = int(torch.randint(1, 8, (1,), generator=gen))
        xy = torch.rand(n, 2, generator=gen) * size * 0.7
        wh = (torch.rand(n, 2, generator=gen) * 0.5 + 0.05) * size
        boxes.append(torch.cat([xy, (xy + wh).clamp(max=size)], dim=1))
        labels.append(torch.randint(0, num_classes, (n,), generator=gen))
    return images, boxes, labels


@dataclass(frozen=True)
class StepSpec:
    """The step to time: model preset, input size, batch and the trainer's runtime switches.
    hsv_on: auto | loader | device, as the trainer's --hsv-on; with the device (auto: on CUDA)
    the batch carries HSV gains and the step includes applying them (training.data.hsv_device).
    """

    preset: str = "r18-gn"
    size: int = 512
    batch: int = 8
    device: str = ""
    amp: bool = True
    channels_last: bool = True
    compile_model: bool = False
    cpu_amp: bool = False
    hsv_on: str = "auto"

    def hsv_on_device(self, dev: torch.device) -> bool:
        return hsv_place_is_device(self.hsv_on, dev)


def _step_fn(spec: StepSpec) -> tuple[Callable[[], torch.Tensor], torch.device]:
    """The trainer's step on one fixed synthetic batch, as a closure, and its device."""
    dev = pick_device(spec.device, 0)
    cuda = dev.type == "cuda"
    if cuda:
        configure_cuda()
    cfg = get_preset(spec.preset, input_size=spec.size)
    model = FCOS(cfg).to(dev)
    channels_last = spec.channels_last and cuda
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    forward: torch.nn.Module = TrainForward(model)
    if spec.compile_model:
        forward = torch.compile(forward)  # type: ignore[assignment]
    optimizer = build_optimizer(model, 1e-4, 0.05, (0.9, 0.999), fused=cuda)
    ctx = StepContext(
        model=model, forward=forward, loss_fn=FCOSLoss(cfg.num_classes, cfg.strides),
        optimizer=optimizer, scheduler=WarmupCosine(1e-4, 10**6, 0),
        ema=ModelEMA(model, TrainConfig.ema_decay, TrainConfig.ema_tau),
        device=dev, normalize=device_normalizer(cfg.mean, cfg.std, dev),
        amp=use_autocast(dev, spec.amp, spec.cpu_amp),
        channels_last=channels_last, grad_clip=1.0, params=list(model.parameters()),
    )  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    batch: tuple = synthetic_batch(spec.batch, spec.size, cfg.num_classes, gen)
    if spec.hsv_on_device(dev):  # the loader's draws at the default jitter
        rng = np.random.default_rng(0)
        batch = (*batch, torch.from_numpy(np.stack([draw_hsv(rng) for _ in range(spec.batch)])))
    if cuda:
        batch = (batch[0].pin_memory(), *batch[1:])
    model.train()

    def step() -> torch.Tensor:  # the trainer's own transfer (targets padded on the host)
        return train_step(ctx, *batch_to_device(batch, ctx))

    return step, dev


def measure(spec: StepSpec, iters: int, warmup: int = 2) -> float:
    """Images per second of full training steps (after `warmup` untimed steps)."""
    step, dev = _step_fn(spec)
    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    start = time.perf_counter()
    for _ in range(iters):
        losses = step()
    float(losses[0])  # wait for the last step
    return spec.batch * iters / (time.perf_counter() - start)


def step_ops(spec: StepSpec) -> int:
    """Operations one step dispatches (after a warm-up step): on CUDA the kernels and copies
    the profiler sees on the device, elsewhere the leaf ATen ops. A small model's GPU step is
    launch-bound, so its time follows this count more than its FLOPs."""
    step, dev = _step_fn(replace(spec, compile_model=False))
    step()
    cuda = dev.type == "cuda"
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        float(step()[0])
    events = prof.events()
    if cuda:
        return sum(1 for e in events if e.device_type == DeviceType.CUDA)
    return sum(1 for e in events if not e.cpu_children)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.tools.speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default="r18-gn")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--cpu-amp", action="store_true", help="bf16 autocast on CPU too")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action="store_true")
    p.add_argument(
        "--hsv-on",
        choices=HSV_PLACES,
        default="auto",
        help="as the trainer's flag: device (auto: on CUDA) puts the HSV jitter in the step",
    )
    p.add_argument(
        "--count-ops",
        action="store_true",
        help="also count the operations one step dispatches (torch.profiler)",
    )
    a = p.parse_args(argv)
    spec = StepSpec(
        a.preset, a.size, a.batch_size, a.device, a.amp, a.channels_last, a.compile,
        a.cpu_amp, a.hsv_on,
    )  # fmt: skip
    img_s = measure(spec, a.iters, a.warmup)
    dev = pick_device(a.device, 0)
    hsv = "HSV on the device" if spec.hsv_on_device(dev) else "no HSV in the step"
    print(
        f"{a.preset} {a.size}px batch {a.batch_size}: {img_s:.2f} img/s "
        f"({dev}, {torch.get_num_threads()} threads, {hsv})"
    )
    if a.count_ops:
        print(f"{step_ops(spec)} operations per step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
