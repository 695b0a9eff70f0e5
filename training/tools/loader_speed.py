"""The trainer's DataLoader alone: images per second, no model (the data side's img/s).

    python -m training.tools.loader_speed --data ../shared/data/voc2012-640 \\
        --eval-interval 0 --input-size 384 --batch-size 64 --workers 14 --cache-images \\
        --mosaic-prob 1.0 --mixup-prob 1.0 --batches 40

Takes the trainer's flags (`python -m training --help`) plus --batches and --warmup, and
builds exactly the trainer's loader (training.data.loaders.build_data): the same workers,
pinned memory, Mosaic/MixUp switches and --hsv-on placement. With --hsv-on device (auto: on
CUDA) the workers only draw the HSV jitter, so compare with `python -m training.tools.speed`, whose
step then includes applying it: the smaller of the two rates bounds a run's img/s.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from typing import Any

from training.cli import resolve_config
from training.config import TrainConfig
from training.data.loaders import DataBundle, build_data
from training.engine.distributed import DistInfo, pick_device


def batches(data: DataBundle) -> Iterator[Any]:
    """The run's batches, epoch after epoch (1, 2, ...), from its one loader iterator."""
    epoch = 1
    while True:
        yield from data.stream.epoch(epoch)
        epoch += 1


def measure(cfg: TrainConfig, num_batches: int, warmup: int = 5) -> tuple[float, bool]:
    """-> (images per second over `num_batches` batches after `warmup` untimed ones, whether
    the HSV jitter was left to the device)."""
    info = DistInfo(device=pick_device(cfg.device, 0))
    data = build_data(cfg, info, lambda epoch: True)
    stream = batches(data)
    for _ in range(warmup):  # workers start and fill their prefetch queues
        next(stream)
    images = 0
    start = time.perf_counter()
    for _ in range(num_batches):
        images += int(next(stream)[0].shape[0])
    return images / (time.perf_counter() - start), data.hsv_on_device


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.tools.loader_speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--batches", type=int, default=40, help="timed batches")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches first")
    own, rest = p.parse_known_args(argv)
    cfg = resolve_config(rest)
    img_s, hsv_device = measure(cfg, own.batches, own.warmup)
    hsv = "HSV drawn only (applied on the device)" if hsv_device else "HSV applied in the loader"
    print(
        f"loader {cfg.input_size}px batch {cfg.batch_size}, {cfg.workers} workers, Mosaic "
        f"{cfg.mosaic_prob} MixUp {cfg.mixup_prob}, {hsv}: {img_s:.1f} img/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
