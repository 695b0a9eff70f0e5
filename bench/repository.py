"""`python -m bench.repository`: what each loaded model costs a real server process: resident
memory (RSS) and the `/detect` p50 of one client with 1 and with N models loaded.

The repository is a temporary folder with N copies of the same ONNX file (the bundled model by
default) named `default`, `m1`, ... Each server is started fresh (`python -m service`,
DETECTOR_MODEL_DIR), waited on until every model is ready, left to settle, then measured:
RSS from /proc, and the p50 of sequential /detect calls to the default model and to models
taken in turn (every model's session warm, the caches shared). Figures go to stdout and, with
`--json`, to a file; name the CPU (`lscpu`) beside them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.attacks.images import jpeg
from bench.attacks.server import run_server
from export.cpu_info import cpu_name

BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "models" / "default.onnx"
MiB = 2**20


def make_repository(folder: Path, model: Path, n: int) -> list[str]:
    """`n` copies of `model` in `folder`: default.onnx, m1.onnx, ...; their names."""
    names = ["default", *(f"m{i}" for i in range(1, n))]
    for name in names:
        shutil.copy(model, folder / f"{name}.onnx")
    return names


def p50_ms(client: httpx.Client, paths: Sequence[str], body: bytes, requests: int) -> float:
    times = []
    for i in range(requests):
        t0 = time.perf_counter()
        r = client.post(paths[i % len(paths)], content=body)
        times.append(time.perf_counter() - t0)
        r.raise_for_status()
    return 1000 * statistics.median(times)


def measure(model: Path, n: int, requests: int, threads: int, body: bytes) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "models"
        folder.mkdir()
        names = make_repository(folder, model, n)
        env = {"DETECTOR_MODEL_DIR": str(folder), "DETECTOR_THREADS": str(threads),
               "DETECTOR_MAX_MODELS": str(max(n, 8)), "DETECTOR_ACCESS_LOG": "false"}  # fmt: skip
        with run_server(Path(tmp), **env) as srv:
            srv.wait_ready(timeout_s=300)

            deadline = time.monotonic() + 300
            while sum(m["state"] == "ready" for m in
                      httpx.get(srv.url + "/models").json()["models"]) < n:  # fmt: skip
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{n} models were not all ready within 300 s")
                time.sleep(0.2)
            srv.quiet_cpu_seconds()
            rss = srv.rss_bytes()
            per_model = {m["name"]: m["memory_bytes"]
                         for m in httpx.get(srv.url + "/models").json()["models"]}  # fmt: skip
            with httpx.Client(base_url=srv.url, timeout=60) as client:
                for name in names:  # one warm-up call per model
                    client.post(f"/detect?model={name}", content=body).raise_for_status()
                default = p50_ms(client, ["/detect"], body, requests)
                rotating = p50_ms(client, [f"/detect?model={m}" for m in names], body, requests)
            srv.terminate()
    return {"models": n, "rss_mib": round(rss / MiB, 1),
            "memory_per_model_mib": {k: round(v / MiB, 1) for k, v in per_model.items()},
            "detect_p50_ms_default": round(default, 2),
            "detect_p50_ms_rotating": round(rotating, 2)}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.repository",
                                description=__doc__.split("\n")[0])  # fmt: skip
    p.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    p.add_argument("--counts", default="1,5", help="repository sizes to measure")
    p.add_argument("--requests", type=int, default=200, help="sequential /detect calls each")
    p.add_argument("--threads", type=int, default=2, help="DETECTOR_THREADS")
    p.add_argument("--image", type=Path, default=None,
                   help="the JPEG to send (default: a synthetic 500x375 one)")  # fmt: skip
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = p.parse_args(argv)
    body = args.image.read_bytes() if args.image else jpeg(500, 375)
    rows = [measure(args.model, int(n), args.requests, args.threads, body)
            for n in args.counts.split(",")]  # fmt: skip
    print("| models | RSS MiB | per model MiB | /detect p50 ms (default) | (models in turn) |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        per = sorted(r["memory_per_model_mib"].values())
        print(f"| {r['models']} | {r['rss_mib']} | {per[0]}-{per[-1]} | "
              f"{r['detect_p50_ms_default']} | {r['detect_p50_ms_rotating']} |")  # fmt: skip
    if args.json is not None:
        given = list(argv) if argv is not None else sys.argv[1:]
        doc = {"command": " ".join(["python -m bench.repository", *given]),
               "machine": cpu_name(), "rows": rows}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
