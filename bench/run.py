"""`python -m bench`: CPU speed of the detector, end to end, in one run on this machine.

Steps: build the weights (checkpoint, or a preset with a fixed torch seed), export them to
ONNX (fp32, INT8) or take an ONNX file as is (`--model`; with no source flags: the bundled
`models/default.onnx` and the weights it was exported from, `models/default.pt`), then for
each precision start `python -m service` on localhost and, in interleaved rounds (so load
changes on a shared machine hit every variant alike): PyTorch eager fp32 at 512x512, raw
`session.run` on the exact tensors the service builds, and sequential `POST /detect` for a
500x375, a 1920x1080 and a 500x500 JPEG. Then closed-loop load with 1, 2, 4 and 8 concurrent
clients. Prints a table, checks the speed targets and writes everything to JSON. Bounded:
fixed request counts and durations, localhost only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.http_load import REPO, Client, LoadResult, closed_loop, merge_results, run_server
from bench.images import bench_images
from bench.models import ModelSource, TorchEager, build_model, existing_model, export_models
from bench.report import command_line, format_report, summary, targets, write_json
from export.cpu_info import cpu_name

DEFAULT_JSON = REPO / "bench" / "results" / "latest.json"
BUNDLED_MODEL = REPO / "models" / "default.onnx"
BUNDLED_WEIGHTS = REPO / "models" / "default.pt"
REFERENCE_SIZE = 512  # the PyTorch eager fp32 reference of the speed targets: 512x512
BLOCK = 5  # requests (and raw runs) per variant per round
PAUSE_S = 0.1  # between blocks: lets the other process's thread pools stop spinning
TORCH_PAUSE_S = 0.5  # after PyTorch: its OpenMP threads may keep spinning for a while


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path, help="training checkpoint (model.checkpoint)")
    src.add_argument("--preset", help="random-init preset (r18-gn when no source is given and "
                     "there is no bundled model)")  # fmt: skip
    p.add_argument("--model", type=Path, help="time this ONNX file as is (precision from its "
                   "metadata); --checkpoint: its weights, for the PyTorch reference")  # fmt: skip
    p.add_argument("--input-size", type=int, help="service input size written into the exported "
                   "models (default: the weights' own)")  # fmt: skip
    p.add_argument("--reference-size", type=int, default=REFERENCE_SIZE,
                   help="PyTorch eager fp32 reference at this square size")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="torch seed for the random init")
    p.add_argument("--precision", default="int8", help="comma-separated: fp32, int8")
    p.add_argument("--calibration-data", type=Path, help="INT8 calibration images (default: "
                   "synthetic ones, fine for speed, not for accuracy)")  # fmt: skip
    p.add_argument("--calibration-images", type=int, default=32)
    p.add_argument("--image", type=Path, help="photo to resize to the bench sizes "
                   "(default: a synthetic natural-looking image)")  # fmt: skip
    p.add_argument("--threads", type=int, help="ORT/torch threads (default: the service's, "
                   "= usable cores)")  # fmt: skip
    p.add_argument("--requests", type=int, default=60, help="sequential requests per image")
    p.add_argument("--torch-runs", type=int, default=12)
    p.add_argument("--concurrency", default="1,2,4,8", help="comma-separated client counts")
    p.add_argument("--duration", type=float, default=12.0, help="seconds per client count")
    p.add_argument("--concurrency-rounds", type=int, default=3,
                   help="the client counts are cycled this many times")  # fmt: skip
    p.add_argument("--max-requests", type=int, default=400, help="cap per client count")
    p.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra DETECTOR_* settings for the server")  # fmt: skip
    p.add_argument("--ready-timeout", type=float, default=180.0)
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results file")
    return p


def _environment(threads: int) -> dict[str, Any]:
    import onnxruntime
    import torch

    cpu = cpu_name()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                                capture_output=True, timeout=10).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"cpu": cpu, "cpus": os.cpu_count(), "threads": threads,
            "python": sys.version.split()[0], "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__, "git_commit": commit or None,
            "load_start": round(os.getloadavg()[0], 2)}  # fmt: skip


def _tensors(images: dict[str, bytes], meta: Any) -> dict[str, np.ndarray]:
    """Exactly what the service feeds the model for each JPEG (draft decode + letterbox)."""
    from export.preprocess import decode_image, preprocess

    out = {}
    for name, data in images.items():
        image, _ = decode_image(data, draft_size=meta.input_size)
        out[name], _ = preprocess(image, meta.input_size, meta.mean, meta.std)
    return out


def _timed(fn: Any, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def _interleaved(a: argparse.Namespace, torch_ref: TorchEager, session: Any,
                 tensors: dict[str, np.ndarray], images: dict[str, bytes], port: int
                 ) -> dict[str, Any]:  # fmt: skip
    """Rounds of: per image, raw session.run and POST /detect one after the other (so both
    see the same idle gap before each run); a back-to-back raw block and a batch-2 block for
    the 500x375 tensor; a PyTorch block."""
    from export.metadata import INPUT_NAME

    rounds = max(1, -(-a.requests // BLOCK))
    torch_per_round = max(1, -(-a.torch_runs // rounds))
    x43 = tensors["500x375"]
    batch2 = np.concatenate([x43] * 2)
    torch_s: list[float] = []
    raw: dict[str, list[float]] = {k: [] for k in [*tensors, "back_to_back", "batch2_per_image"]}
    http: dict[str, list[float]] = {name: [] for name in images}
    stages: dict[str, list[dict[str, float]]] = {name: [] for name in images}
    client = Client(port)
    for _ in range(rounds):
        for name, body in images.items():
            x = tensors[name]
            for _ in range(BLOCK):
                raw[name] += _timed(lambda x=x: session.run(None, {INPUT_NAME: x}), 1)
                elapsed, status, parsed = client.detect(body, parse=True)
                if status != 200 or parsed is None:
                    raise RuntimeError(f"/detect {name} answered {status}")
                http[name].append(elapsed)
                stages[name].append(parsed["timings_ms"])
        raw["back_to_back"] += _timed(lambda: session.run(None, {INPUT_NAME: x43}), BLOCK)
        batch = _timed(lambda: session.run(None, {INPUT_NAME: batch2}), max(1, BLOCK // 2))
        raw["batch2_per_image"] += [s / 2 for s in batch]
        time.sleep(PAUSE_S)
        torch_s += [torch_ref.run() for _ in range(torch_per_round)]
        time.sleep(TORCH_PAUSE_S)
    client.close()
    stage_p50 = {name: {k: round(float(np.median([s[k] for s in rows])), 2) for k in rows[0]}
                 for name, rows in stages.items()}  # fmt: skip
    return {"torch": summary(torch_s), "raw": {k: summary(v) for k, v in raw.items()},
            "http": {k: summary(v) for k, v in http.items()},
            "server_stages_p50_ms": stage_p50}  # fmt: skip


def _concurrency(a: argparse.Namespace, port: int, body: bytes) -> list[dict[str, Any]]:
    """Closed-loop load per client count, in `--concurrency-rounds` interleaved rounds (load
    changes on a shared machine then hit every client count alike); totals per count."""
    counts = [int(c) for c in a.concurrency.split(",") if c.strip()]
    per_round = a.duration / a.concurrency_rounds
    results: dict[int, list[LoadResult]] = {c: [] for c in counts}
    for r in range(a.concurrency_rounds):
        for clients in counts:
            print(f"[bench] round {r + 1}/{a.concurrency_rounds}: {clients} client(s) for "
                  f"{per_round:g} s ...", flush=True)  # fmt: skip
            time.sleep(PAUSE_S)
            cap = max(1, a.max_requests // a.concurrency_rounds)
            results[clients].append(closed_loop(port, body, clients, per_round, cap))
    return [{"clients": clients, **merge_results(parts)} for clients, parts in results.items()]


def _run_precision(a: argparse.Namespace, exported: Any, torch_ref: TorchEager,
                   images: dict[str, bytes], threads: int, workdir: Path,
                   source: ModelSource) -> dict[str, Any]:  # fmt: skip
    from export.metadata import ModelMetadata
    from export.runtime import make_session

    session = make_session(exported.path, threads)
    meta = ModelMetadata.from_strings(session.get_modelmeta().custom_metadata_map)
    tensors = _tensors(images, meta)
    env = dict(kv.split("=", 1) for kv in a.server_env)
    env.setdefault("DETECTOR_THREADS", str(threads))
    log = workdir / f"server-{exported.precision}.log"
    print(f"[bench] {exported.precision}: starting python -m service ...", flush=True)
    with run_server(exported.path, log, env) as server:
        ready_s = server.wait_ready(a.ready_timeout)
        print(f"[bench] ready in {ready_s:.1f} s; interleaved sequential rounds ...", flush=True)
        run = _interleaved(a, torch_ref, session, tensors, images, server.port)
        del session  # no second thread pool alive during the load test
        levels = _concurrency(a, server.port, images["500x375"])
        run["concurrency"] = levels
        run["server_ready_s"] = round(ready_s, 2)
    run["model"] = {"name": meta.name, "preset": meta.preset, "precision": meta.precision,
                    "size_mb": round(exported.size_mb, 2), "source": source.describe(),
                    "export_s": round(exported.seconds, 1), "note": exported.note}  # fmt: skip
    run["tensor_shapes"] = {k: f"{v.shape[2]}x{v.shape[3]}" for k, v in tensors.items()}
    run["torch_shape"] = "x".join(str(d) for d in torch_ref.x.shape[2:])
    run["targets"] = targets(run)
    return run


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    precisions = [p.strip() for p in a.precision.split(",") if p.strip()]
    if not precisions or set(precisions) - {"fp32", "int8"}:
        print(f"error: --precision must list fp32 and/or int8, got {a.precision!r}",
              file=sys.stderr)  # fmt: skip
        return 2
    from service.settings import default_threads

    threads = a.threads or default_threads()
    if a.checkpoint is None and a.preset is None and a.model is None and BUNDLED_MODEL.exists():
        a.model, a.checkpoint = BUNDLED_MODEL, BUNDLED_WEIGHTS
    if a.model is not None and a.checkpoint is None:
        print("error: --model needs --checkpoint with the same weights (the PyTorch reference)",
              file=sys.stderr)  # fmt: skip
        return 2
    source = ModelSource(a.checkpoint, a.preset or "r18-gn", a.seed)
    environment = _environment(threads)
    images, origin = bench_images(a.image)
    result: dict[str, Any] = {
        "command": command_line("bench", argv),
        "environment": environment,
        "images": {"origin": origin, "jpeg_bytes": {k: len(v) for k, v in images.items()}},
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="fcos-bench.") as tmp:
        workdir = Path(tmp)
        print(f"[bench] exporting {source.describe()} -> {', '.join(precisions)} ...",
              flush=True)  # fmt: skip
        model = build_model(source)
        if a.model is not None:
            given = existing_model(a.model)
            exported, precisions = {given.precision: given}, [given.precision]
        else:
            if a.input_size:
                model.cfg = model.cfg.replace(input_size=a.input_size)
            exported = export_models(model, workdir, precisions, a.calibration_data,
                                     a.calibration_images)  # fmt: skip
        from export.preprocess import decode_image, preprocess

        size = a.reference_size
        square, _ = decode_image(images["500x500"], draft_size=size)
        x_ref, _ = preprocess(square, size, model.cfg.mean, model.cfg.std)
        torch_ref = TorchEager(model, x_ref, threads)
        for precision in precisions:
            result["runs"].append(_run_precision(a, exported[precision], torch_ref, images,
                                                 threads, workdir, source))  # fmt: skip
    environment["load_end"] = round(os.getloadavg()[0], 2)
    print(format_report(result))
    write_json(a.json, result, "bench")
    return 0
