"""`python -m bench.throughput`: saturated throughput per core, server configurations side by side.

Starts one `python -m service` per variant (each a set of DETECTOR_* settings; all on the same
model file), then in interleaved rounds (load changes on a shared machine hit every variant
alike) measures for each: one client (sequential requests: latency p50 and req/s), 8 clients
(closed loop: req/s, errors, p50/p99), and one client while a CPU hog spins on core 0 (a
neighbour). Idle servers cost nothing between their turns (no thread spins). Checks the
throughput targets, comparing the last variant ("after") with the first ("before"),
and writes everything to JSON.

`--runtimes`: instead, the runtime configurations side by side (ONNX Runtime, OpenVINO f32 and
bf16, each forced, and DETECTOR_BACKEND=auto), plus each one's model-only time on one thread
(the same photo, measured in this process after the servers stop), checking that auto serves
within 5% of the best configuration and that the saturated service gets most of what the
cores can give (RUNTIME_* targets below).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.http_load import (
    HOST,
    REPO,
    LoadResult,
    Server,
    closed_loop,
    merge_results,
    run_server,
)
from bench.images import bench_images
from bench.report import check, command_line, write_json
from export.cpu_info import cpu_name
from service.settings import default_threads, model_display_path

DEFAULT_JSON = REPO / "bench" / "results" / "throughput.json"
BUNDLED_MODEL = REPO / "models" / "default.onnx"
# The service before the per-core throughput work: one inference thread using every core,
# spinning threads.
BEFORE = "before:DETECTOR_WORKERS=1,DETECTOR_SPINNING=true,DETECTOR_BACKEND=onnxruntime"
AFTER = "after:"  # the service's defaults
PAUSE_S = 0.3  # between measurements: lets thread pools of the previous one go idle

# Targets of the per-core throughput work (after vs before, within one run).
SATURATED_GAIN_MIN = 2.0
SINGLE_P50_RATIO_MAX = 1.0
SATURATED_OVER_SINGLE_MIN = 1.0
P99_OVER_P50_MAX = 3.0
HOG_P50_RATIO_MAX = 1.3

# --runtimes: every configuration forced, then the automatic choice (last: the candidate).
RUNTIMES = (
    "ort:DETECTOR_BACKEND=onnxruntime",
    "ov-f32:DETECTOR_BACKEND=openvino,DETECTOR_OPENVINO_PRECISION=f32",
    "ov-bf16:DETECTOR_BACKEND=openvino,DETECTOR_OPENVINO_PRECISION=bf16",
    "auto:DETECTOR_BACKEND=auto",
)
RUNTIME_CONFIGS = {"ort": "onnxruntime", "ov-f32": "openvino-f32", "ov-bf16": "openvino-bf16"}
# Runtime-choice targets: auto within 5% of the best forced configuration (saturated req/s and
# 1-client p50), and the saturated service at >= 85% of cores / the best 1-thread model time.
AUTO_SATURATED_MIN = 0.95
AUTO_P50_MAX = 1.05
CORE_EFFICIENCY_MIN = 0.85
MODEL_WARMUP_CALLS = 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.throughput",
                                description=__doc__.splitlines()[0])  # fmt: skip
    p.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="ONNX file to serve")
    p.add_argument("--variant", action="append", metavar="NAME:KEY=VALUE,...",
                   help=f"server settings (repeatable; first = baseline, last = candidate); "
                   f"default: {BEFORE!r} and {AFTER!r}")  # fmt: skip
    p.add_argument("--runtimes", action="store_true",
                   help="compare the runtime configurations and auto (instead of --variant)")
    p.add_argument("--image", type=Path, help="photo resized to 500x375 (default: synthetic)")
    p.add_argument("--clients", type=int, default=8, help="clients of the saturated load")
    p.add_argument("--duration", type=float, default=6.0, help="seconds per measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--no-hog", action="store_true", help="skip the busy-neighbour measurement")
    p.add_argument("--ready-timeout", type=float, default=180.0)
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results file")
    return p


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """'name:KEY=VALUE,KEY=VALUE' -> (name, env)."""
    name, _, rest = text.partition(":")
    env = dict(kv.split("=", 1) for kv in rest.split(",") if kv.strip())
    if not name or any(not k.startswith("DETECTOR_") for k in env):
        raise ValueError(f"bad variant {text!r}: want NAME:DETECTOR_X=1,DETECTOR_Y=2")
    return name, env


@contextmanager
def cpu_hog(core: int = 0) -> Iterator[subprocess.Popen[bytes]]:
    """A busy-looping process pinned to one core (a noisy neighbour), killed on exit."""
    code = f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(0.3)  # let it start spinning
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


def targets(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    def rps(v: dict[str, Any], key: str) -> float | None:
        return v[key]["throughput_rps"] if key in v else None

    def p50(v: dict[str, Any], key: str) -> float | None:
        return v[key]["latency"].get("p50_ms") if key in v else None

    sat = after["saturated"]
    out = [
        check("saturated req/s: after / before", _ratio(rps(after, "saturated"),
              rps(before, "saturated")), SATURATED_GAIN_MIN, ">=",
               f"{rps(after, 'saturated')} vs {rps(before, 'saturated')} req/s"),
        check("saturated: errors", float(sat["errors"]), 0, "<=", f"statuses {sat['statuses']}"),
        check("saturated: p99 / p50", _ratio(sat["latency"].get("p99_ms"), p50(after,
              "saturated")), P99_OVER_P50_MAX, "<=", "after"),
        check("1 client p50: after / before", _ratio(p50(after, "single"), p50(before,
              "single")), SINGLE_P50_RATIO_MAX, "<=",
               f"{p50(after, 'single')} vs {p50(before, 'single')} ms"),
        check("after: saturated / 1-client req/s", _ratio(rps(after, "saturated"),
              rps(after, "single")), SATURATED_OVER_SINGLE_MIN, ">=", "the bench's own target"),
    ]  # fmt: skip
    if "hog" in after:
        out.append(check("after: 1 client p50 with a hog on core 0 / quiet", _ratio(
            p50(after, "hog"), p50(after, "single")), HOG_P50_RATIO_MAX, "<=",
            f"before: {_ratio(p50(before, 'hog'), p50(before, 'single')) or 0:.2f}"))  # fmt: skip
    return out


def measure(a: argparse.Namespace, servers: dict[str, Server], body: bytes) -> dict[str, Any]:
    kinds = ["single", "saturated"] + ([] if a.no_hog else ["hog"])
    parts: dict[str, dict[str, list[LoadResult]]] = {n: {k: [] for k in kinds} for n in servers}
    cap = 100_000
    for r in range(a.rounds):
        for name, server in servers.items():
            print(f"[throughput] round {r + 1}/{a.rounds}: {name}", flush=True)
            time.sleep(PAUSE_S)
            parts[name]["single"].append(closed_loop(server.port, body, 1, a.duration, cap))
            time.sleep(PAUSE_S)
            parts[name]["saturated"].append(
                closed_loop(server.port, body, a.clients, a.duration, cap)
            )
            if not a.no_hog:
                time.sleep(PAUSE_S)
                with cpu_hog(0):
                    parts[name]["hog"].append(closed_loop(server.port, body, 1, a.duration, cap))
    return {n: {k: merge_results(v) for k, v in kinds_.items()} for n, kinds_ in parts.items()}


def runtime_targets(
    measured: dict[str, dict[str, Any]], model_ms: dict[str, float], cores: int
) -> list[dict[str, Any]]:
    """--runtimes: auto against the best forced configuration, and the cores' use."""
    fixed = [n for n in measured if n != "auto" and n in RUNTIME_CONFIGS]
    auto = measured["auto"]
    best_sat = max(fixed, key=lambda n: measured[n]["saturated"]["throughput_rps"])
    best_p50 = min(fixed, key=lambda n: measured[n]["single"]["latency"].get("p50_ms") or 1e9)
    sat = auto["saturated"]["throughput_rps"]
    p50 = auto["single"]["latency"].get("p50_ms")
    best_rps = measured[best_sat]["saturated"]["throughput_rps"]
    best_ms = measured[best_p50]["single"]["latency"].get("p50_ms")
    out = [
        check("auto saturated req/s / best configuration's", _ratio(sat, best_rps),
              AUTO_SATURATED_MIN, ">=", f"{sat:.1f} vs {best_sat} {best_rps:.1f} req/s"),
        check("auto 1 client p50 / best configuration's", _ratio(p50, best_ms),
              AUTO_P50_MAX, "<=", f"{p50} vs {best_p50} {best_ms} ms"),
    ]  # fmt: skip
    if model_ms:
        fastest = min(model_ms, key=model_ms.__getitem__)
        bound = cores / (model_ms[fastest] / 1000)
        out.append(check(
            "auto saturated req/s / (cores / best 1-thread model time)", _ratio(sat, bound),
            CORE_EFFICIENCY_MIN, ">=",
            f"{sat:.1f} vs {cores} / {model_ms[fastest]} ms ({fastest}) = {bound:.1f} req/s"))
    out.append(check("auto saturated: errors", float(auto["saturated"]["errors"]), 0, "<=",
                     f"statuses {auto['saturated']['statuses']}"))  # fmt: skip
    return out


def model_times(
    model: Path, body: bytes, configs: dict[str, str], seconds: float, rounds: int
) -> dict[str, float]:
    """Each configuration's model-only time (ms, median of calls) on one thread: the
    `inference` stage of the pipeline on the bench photo, in interleaved rounds."""
    from export.preprocess import decode_image
    from export.runtime_choice import LoadOptions, load_config

    image, _ = decode_image(body)
    detectors = {}
    for name, config in configs.items():
        try:
            detectors[name] = load_config(model, config, LoadOptions(threads=1, spinning=False))
        except ImportError as exc:  # e.g. openvino not installed: no such configuration
            print(f"[throughput] {name}: {exc}", flush=True)
            continue
        for _ in range(MODEL_WARMUP_CALLS):
            detectors[name].detect_image(image)
    calls: dict[str, list[float]] = {n: [] for n in detectors}
    for _ in range(rounds):
        for name, det in detectors.items():
            t_end = time.perf_counter() + seconds
            while time.perf_counter() < t_end:
                calls[name].append(det.detect_image(image).timings_s["inference"])
    return {n: round(1000 * statistics.median(c), 2) for n, c in calls.items() if c}


def served_runtime(server: Server) -> dict[str, Any] | None:
    """The `runtime` object of the server's GET /model (how it chose its runtime)."""
    try:
        conn = http.client.HTTPConnection(HOST, server.port, timeout=5.0)
        conn.request("GET", "/model")
        body = json.loads(conn.getresponse().read())
        conn.close()
    except (OSError, ValueError):
        return None
    runtime = body.get("runtime") if isinstance(body, dict) else None
    return runtime if isinstance(runtime, dict) else None


def format_table(result: dict[str, Any], names: Sequence[str] | None = None) -> str:
    """The Markdown table of `names` (default: every variant) and the target checks."""
    lines = ["| variant | settings | 1 client p50 ms | 1 client req/s | "
             f"{result['clients']} clients req/s | p50 / p99 ms | errors | hog p50 ms |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, v in result["variants"].items():
        if names is not None and name not in names:
            continue
        s, sat, hog = v["single"], v["saturated"], v.get("hog")
        env = " ".join(f"{k.removeprefix('DETECTOR_')}={x}" for k, x in v["env"].items())
        lines.append(
            f"| {name} | {env or 'defaults'} | {s['latency'].get('p50_ms')} | "
            f"{s['throughput_rps']:.1f} | {sat['throughput_rps']:.1f} | "
            f"{sat['latency'].get('p50_ms')} / {sat['latency'].get('p99_ms')} | {sat['errors']} | "
            f"{hog['latency'].get('p50_ms') if hog else '-'} |"
        )
    lines.append("")
    extra = []  # --runtimes: the model-only times and what each server chose
    if "model_ms_1_thread" in result:
        extra.append("model only, 1 thread, ms: " + ", ".join(
            f"{n} {ms}" for n, ms in result["model_ms_1_thread"].items()))  # fmt: skip
    for name, v in result["variants"].items():
        runtime = v.get("runtime")
        if runtime and "model_ms_1_thread" in result and (names is None or name in names):
            extra.append(f"{name}: serves {runtime['config']} ({runtime['chosen_by']}: "
                         f"{runtime['reason']}; timed {runtime['timings_ms'] or '-'}), "
                         f"ready in {v.get('ready_s')} s")  # fmt: skip
    lines += [*extra, ""] if extra else []
    for t in result["targets"]:
        lines.append(f"- {t['status']}: {t['target']} = {t['value']} ({t['limit']}; "
                     f"{t['detail']})")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.runtimes and a.variant:
        raise SystemExit("--runtimes and --variant: choose one")
    default = list(RUNTIMES) if a.runtimes else [BEFORE, AFTER]
    variants = dict(parse_variant(v) for v in (a.variant or default))
    images, origin = bench_images(a.image)
    body = images["500x375"]
    cores = default_threads()
    result: dict[str, Any] = {
        "command": command_line("bench.throughput", argv),
        "environment": {"cpu": cpu_name(), "cpus": os.cpu_count(), "cores_used": cores,
                        "python": sys.version.split()[0],
                        "load_start": round(os.getloadavg()[0], 2)},
        "model": model_display_path(a.model),
        "image": f"{origin}, 500x375 JPEG ({len(body)} bytes)",
        "clients": a.clients, "duration_s": a.duration, "rounds": a.rounds,
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fcos-throughput.") as tmp, ExitStack() as stack:
        servers = {}
        started: dict[str, dict[str, Any]] = {}
        for name, env in variants.items():
            log = Path(tmp) / f"server-{name}.log"
            servers[name] = server = stack.enter_context(run_server(a.model, log, env))
            ready = server.wait_ready(a.ready_timeout)
            started[name] = {"ready_s": round(ready, 2), "runtime": served_runtime(server)}
            print(f"[throughput] {name} ready in {ready:.1f} s", flush=True)
        measured = measure(a, servers, body)
    result["variants"] = {n: {"env": variants[n], **started[n], **measured[n]} for n in variants}
    names = list(variants)
    if a.runtimes:
        configs = {n: RUNTIME_CONFIGS[n] for n in names if n in RUNTIME_CONFIGS}
        model_ms = model_times(a.model, body, configs, a.duration / 2, a.rounds)
        result["model_ms_1_thread"] = model_ms
        result["targets"] = runtime_targets(measured, model_ms, cores)
    else:
        result["targets"] = targets(measured[names[0]], measured[names[-1]])
    result["environment"]["load_end"] = round(os.getloadavg()[0], 2)
    print(format_table(result))
    write_json(a.json, result, "throughput")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
