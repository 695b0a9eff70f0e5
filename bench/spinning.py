"""`python -m bench.spinning`: what ONNX Runtime's pool-thread spinning does to a lone model run,
on a quiet machine and beside a busy neighbour, and what `DETECTOR_SPINNING=auto` makes of it.

Three ways to run the model on one letterboxed photo, each an `OnnxDetector` with `THREADS`
threads: spinning, not spinning, and `auto` (`export.spin_policy.SpinPolicy` choosing per run).
They take turns in short blocks (a gap like a request's decode and NMS between runs), first on
the quiet machine, then with a busy-looping process pinned to core 0 (`bench.throughput`'s hog).
Writes the medians and each mode's ratio to the quiet spinning run as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.images import bench_images
from bench.report import command_line, write_json
from bench.throughput import BUNDLED_MODEL, cpu_hog
from export.preprocess import decode_image, preprocess
from export.runtime import OnnxDetector, Spinning
from service.settings import default_threads, model_display_path

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "spinning.json"
MODES: dict[str, Spinning] = {"spinning": True, "not spinning": False, "auto": "auto"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.spinning",
                                description=__doc__.splitlines()[0])  # fmt: skip
    p.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    p.add_argument("--image", type=Path, help="photo resized to 500x375 (default: synthetic)")
    p.add_argument("--threads", type=int, default=default_threads())
    p.add_argument("--blocks", type=int, default=12, help="turns per mode and condition")
    p.add_argument("--runs", type=int, default=15, help="runs per turn")
    p.add_argument("--gap-ms", type=float, default=3.0, help="pause between runs")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    return p


def measure(detectors: dict[str, OnnxDetector], x: np.ndarray, a: argparse.Namespace
            ) -> dict[str, list[float]]:  # fmt: skip
    times: dict[str, list[float]] = {m: [] for m in detectors}
    for _ in range(a.blocks):
        for mode, det in detectors.items():
            for _ in range(a.runs):
                t0 = time.perf_counter()
                det.infer(x)
                times[mode].append(1000 * (time.perf_counter() - t0))
                time.sleep(a.gap_ms / 1000)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    images, origin = bench_images(a.image)
    image, _ = decode_image(images["500x375"])
    detectors = {m: OnnxDetector(a.model, a.threads, spinning=s) for m, s in MODES.items()}
    meta = detectors["auto"].metadata
    x, _ = preprocess(image, meta.input_size, meta.mean, meta.std)
    for det in detectors.values():
        for _ in range(5):
            det.infer(x)
    result: dict[str, Any] = {
        "command": command_line("bench.spinning", argv),
        "model": model_display_path(a.model), "image": origin, "input": list(x.shape),
        "threads": a.threads, "blocks": a.blocks, "runs": a.runs, "gap_ms": a.gap_ms,
    }  # fmt: skip
    quiet = measure(detectors, x, a)
    with cpu_hog(0):
        busy = measure(detectors, x, a)
    policy = detectors["auto"].spin_policy
    result["switches"] = policy.switches if policy else 0
    ref = statistics.median(quiet["spinning"])
    for name, times in (("quiet", quiet), ("hog", busy)):
        result[name] = {m: {"p50_ms": round(statistics.median(t), 2),
                            "p90_ms": round(float(np.percentile(t, 90)), 2),
                            "vs_quiet_spinning": round(statistics.median(t) / ref, 3)}
                        for m, t in times.items()}  # fmt: skip
    for name in ("quiet", "hog"):
        print(name, json.dumps(result[name]))
    write_json(a.json, result, "spinning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
