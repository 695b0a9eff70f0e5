"""`python -m bench.tiling IMAGE`: what tiled inference costs on one image, through the runtime
(no HTTP): tiles run and the p50 time of `detect_bytes` for each `tile` mode, at the service's
operating defaults. E.g. a 2x2 mosaic of val (python -m training.tools.mosaic) at 1280x1280."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from export.backends import load_detector
from export.defaults import MAX_DETECTIONS, NMS_IOU, SCORE_THRESHOLD
from export.postprocess import candidate_config
from export.tiling import parse_tile

BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "models" / "default.onnx"


def measure(
    model: Path, data: bytes, modes: Sequence[str], runs: int
) -> list[tuple[str, int, float]]:
    """(mode, tiles run, p50 seconds) per mode, after one warm-up call each."""
    det = load_detector(model)
    cfg = candidate_config(SCORE_THRESHOLD, MAX_DETECTIONS, NMS_IOU)
    out = []
    for mode in modes:
        tile = parse_tile(mode)
        result = det.detect_bytes(data, cfg, tile=tile)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            result = det.detect_bytes(data, cfg, tile=tile)
            times.append(time.perf_counter() - t0)
        out.append((mode, result.tiles, statistics.median(times)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tiling", description=__doc__.split("\n")[0])
    p.add_argument("image", type=Path)
    p.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    p.add_argument("--modes", default="off,auto,2", help="comma-separated tile modes")
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args(argv)
    rows = measure(args.model, args.image.read_bytes(), args.modes.split(","), args.runs)
    for mode, tiles, p50 in rows:
        print(f"tile={mode}: {tiles} tiles, p50 {1000 * p50:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
