"""Training-step throughput on synthetic batches (no data loading): the model side's img/s.

    python -m training.speed --preset r18-gn --size 512 --batch-size 8 --iters 5
    python -m training.speed --preset r18-gn --batch-size 32 --iters 50 --compile   # on a GPU
    python -m training.speed --preset r18-gn-lite --size 384 --batch-size 64 --count-ops

Runs the trainer's own step (training.loop.train_step: bf16 autocast + channels_last on
CUDA, loss, backward, clip, AdamW, EMA). Compare with the img/s in a run's log.jsonl: if
that is much lower, the data pipeline (workers, --cache-images) is the bottleneck.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from model.config import get_preset
from model.fcos import FCOS
from training.data_setup import device_normalizer
from training.distributed import configure_cuda, pick_device
from training.ema import ModelEMA
from training.loop import StepContext, TrainForward, batch_to_device, train_step, use_autocast
from training.losses import FCOSLoss
from training.optim import build_optimizer
from training.schedule import WarmupCosine


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


def _step_fn(
    preset: str, size: int, batch: int, device: str, amp: bool, channels_last: bool,
    compile_model: bool, cpu_amp: bool,
) -> tuple[Callable[[], torch.Tensor], torch.device]:  # fmt: skip
    """The trainer's step on one fixed synthetic batch, as a closure, and its device."""
    dev = pick_device(device, 0)
    cuda = dev.type == "cuda"
    if cuda:
        configure_cuda()
    cfg = get_preset(preset, input_size=size)
    model = FCOS(cfg).to(dev)
    channels_last = channels_last and cuda
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    forward: torch.nn.Module = TrainForward(model)
    if compile_model:
        forward = torch.compile(forward)  # type: ignore[assignment]
    optimizer = build_optimizer(model, 1e-4, 0.05, (0.9, 0.999), fused=cuda)
    ctx = StepContext(
        model=model, forward=forward, loss_fn=FCOSLoss(cfg.num_classes, cfg.strides),
        optimizer=optimizer, scheduler=WarmupCosine(1e-4, 10**6, 0), ema=ModelEMA(model),
        device=dev, normalize=device_normalizer(cfg.mean, cfg.std, dev),
        amp=use_autocast(dev, amp, cpu_amp),
        channels_last=channels_last, grad_clip=1.0, params=list(model.parameters()),
    )  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    images, boxes, labels = synthetic_batch(batch, size, cfg.num_classes, gen)
    if cuda:
        images = images.pin_memory()
    model.train()

    def step() -> torch.Tensor:  # the trainer's own transfer (targets padded on the host)
        return train_step(ctx, *batch_to_device((images, boxes, labels), ctx))

    return step, dev


def measure(
    preset: str, size: int, batch: int, iters: int, warmup: int = 2, device: str = "",
    amp: bool = True, channels_last: bool = True, compile_model: bool = False,
    cpu_amp: bool = False,
) -> float:  # fmt: skip
    """Images per second of full training steps (after `warmup` untimed steps)."""
    step, dev = _step_fn(preset, size, batch, device, amp, channels_last, compile_model, cpu_amp)
    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    start = time.perf_counter()
    for _ in range(iters):
        losses = step()
    float(losses[0])  # wait for the last step
    return batch * iters / (time.perf_counter() - start)


def step_ops(
    preset: str, size: int, batch: int, device: str = "", amp: bool = True,
    channels_last: bool = True, cpu_amp: bool = False,
) -> int:  # fmt: skip
    """Operations one step dispatches (after a warm-up step): on CUDA the kernels and copies
    the profiler sees on the device, elsewhere the leaf ATen ops. A small model's GPU step is
    launch-bound, so its time follows this count more than its FLOPs."""
    step, dev = _step_fn(preset, size, batch, device, amp, channels_last, False, cpu_amp)
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
        prog="python -m training.speed",
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
        "--count-ops",
        action="store_true",
        help="also count the operations one step dispatches (torch.profiler)",
    )
    a = p.parse_args(argv)
    img_s = measure(
        a.preset,
        a.size,
        a.batch_size,
        a.iters,
        a.warmup,
        a.device,
        a.amp,
        a.channels_last,
        a.compile,
        a.cpu_amp,
    )
    print(
        f"{a.preset} {a.size}px batch {a.batch_size}: {img_s:.2f} img/s "
        f"({pick_device(a.device, 0)}, {torch.get_num_threads()} threads)"
    )
    if a.count_ops:
        ops = step_ops(a.preset, a.size, a.batch_size, a.device, a.amp, a.channels_last, a.cpu_amp)
        print(f"{ops} operations per step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
