"""`python -m bench.batching`: does running several images through the model together pay on
this CPU? Writes the figures to a JSON file (bench/results/batching.json by default).

1. Model level, interleaved rounds: for each batch size N, per-image milliseconds of
   (a) N session runs, each on its image's own letterboxed tensor (what POST /detect/batch
       does), and (b) one run on the N tensors zero-padded to a common shape (what batching
       would have to do, since images of different aspect ratios letterbox to different shapes).
   N=1 is the control (the same run twice: its ratio shows the noise of the machine).
2. HTTP, through export.client against a real `python -m service`: N images as N POST /detect
   calls vs one POST /detect/batch call, per image.

    python -m bench.batching --images ../shared/data/voc2012-640/JPEGImages --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.http_load import run_server
from bench.images import encode_jpeg, synthetic_photo
from bench.report import write_json
from export.client import DetectorClient
from export.metadata import INPUT_NAME
from export.preprocess import decode_image, preprocess
from export.runtime import make_session
from service.settings import DEFAULT_MODEL_PATH, model_display_path

SYNTHETIC_SIZES = ((500, 375), (375, 500), (500, 333), (480, 640), (640, 480), (500, 500))


def load_images(directory: Path | None, count: int) -> tuple[list[bytes], str]:
    if directory is not None:
        paths = sorted(directory.glob("*.jpg"))[:count]
        return [p.read_bytes() for p in paths], f"first {len(paths)} JPEGs of {directory}"
    sizes = [SYNTHETIC_SIZES[i % len(SYNTHETIC_SIZES)] for i in range(count)]
    images = [encode_jpeg(synthetic_photo(w, h, seed=i)) for i, (w, h) in enumerate(sizes)]
    return images, f"{count} synthetic photos (bench.images), mixed aspect ratios"


def padded_batch(tensors: Sequence[np.ndarray]) -> np.ndarray:
    """(1, 3, h_i, w_i) tensors -> (N, 3, max h, max w), zero-padded bottom/right (the
    letterbox's own padding value)."""
    h = max(t.shape[2] for t in tensors)
    w = max(t.shape[3] for t in tensors)
    out = np.zeros((len(tensors), 3, h, w), np.float32)
    for i, t in enumerate(tensors):
        out[i, :, : t.shape[2], : t.shape[3]] = t[0]
    return out


def _ms(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return 1000.0 * (time.perf_counter() - t0)


def _summary(per_image_ms: list[float]) -> dict[str, float]:
    return {
        "median_ms_per_image": round(statistics.median(per_image_ms), 2),
        "min_ms_per_image": round(min(per_image_ms), 2),
        "rounds": len(per_image_ms),
    }


def _paired(a: list[float], b: list[float]) -> float:
    """Median over rounds of a/b (each round's two timings ran back to back): robust to the
    load of a shared machine drifting between rounds."""
    return round(statistics.median(x / y for x, y in zip(a, b, strict=True)), 3)


def model_level(model: Path, images: list[bytes], sizes: list[int], rounds: int,
                threads: int) -> list[dict[str, Any]]:  # fmt: skip
    session = make_session(model, threads)
    meta = session.get_modelmeta().custom_metadata_map
    size = int(meta["input_size"])
    mean, std = json.loads(meta["mean"]), json.loads(meta["std"])
    tensors = [preprocess(decode_image(b, draft_size=size)[0], size, mean, std)[0] for b in images]
    run = lambda x: session.run(None, {INPUT_NAME: x})  # noqa: E731
    for t in tensors[:2]:
        run(t)  # warm-up
    out = []
    for n in sizes:
        group = tensors[:n]
        batch = padded_batch(group)
        seq, bat = [], []
        for r in range(rounds):  # alternate which goes first: drifting load hits both alike
            pair = [lambda g=group: [run(t) for t in g], lambda b=batch: run(b)]
            for which in (0, 1) if r % 2 == 0 else (1, 0):
                (seq, bat)[which].append(_ms(pair[which]) / n)
        out.append({"images": n, "batched_shape": list(batch.shape),
                    "sequential": _summary(seq), "batched": _summary(bat),
                    "batched_over_sequential": _paired(bat, seq)})  # fmt: skip
    return out


def http_level(model: Path, images: list[bytes], sizes: list[int], rounds: int,
               threads: int) -> list[dict[str, Any]]:  # fmt: skip
    env = {"DETECTOR_THREADS": str(threads), "DETECTOR_ACCESS_LOG": "false"}
    with tempfile.TemporaryDirectory() as tmp, \
            run_server(model, Path(tmp) / "server.log", env) as server:  # fmt: skip
        server.wait_ready(120)
        out = []
        with DetectorClient(f"http://127.0.0.1:{server.port}") as client:
            client.detect(images[0])  # warm-up
            for n in sizes:
                group = images[:n]
                single, batch = [], []
                for r in range(rounds):
                    pair = [lambda g=group: [client.detect(b) for b in g],
                            lambda g=group: client.detect_batch(g)]  # fmt: skip
                    for which in (0, 1) if r % 2 == 0 else (1, 0):
                        (single, batch)[which].append(_ms(pair[which]) / n)
                out.append({"images": n, "detect_calls": _summary(single),
                            "detect_batch_call": _summary(batch),
                            "batch_over_calls": _paired(batch, single)})  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.batching", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    p.add_argument("--images", type=Path, default=None, help="directory of JPEGs (else synthetic)")
    p.add_argument("--sizes", default="1,2,4,8", help="batch sizes")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--json", type=Path, default=Path("bench/results/batching.json"))
    a = p.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",")]
    images, origin = load_images(a.images, max(sizes))
    result: dict[str, Any] = {"model": model_display_path(a.model), "images": origin,
                              "threads": a.threads, "rounds": a.rounds}  # fmt: skip
    result["model_level"] = model_level(a.model, images, sizes, a.rounds, a.threads)
    for row in result["model_level"]:
        print(f"model  N={row['images']}: sequential {row['sequential']['median_ms_per_image']}"
              f" ms/image, batched {row['batched']['median_ms_per_image']} ms/image "
              f"(paired ratio x{row['batched_over_sequential']}, shape {row['batched_shape']})")
    if not a.skip_http:
        result["http"] = http_level(a.model, images, sizes, a.rounds, a.threads)
        for row in result["http"]:
            print(f"http   N={row['images']}: {row['images']} x /detect "
                  f"{row['detect_calls']['median_ms_per_image']} ms/image, /detect/batch "
                  f"{row['detect_batch_call']['median_ms_per_image']} ms/image "
                  f"(paired ratio x{row['batch_over_calls']})")
    write_json(a.json, result, "batching")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
