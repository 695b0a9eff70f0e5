"""`python -m bench.throughput`: saturated throughput per core, server configurations side by side.

Starts one `python -m service` per variant (each a set of DETECTOR_* settings; all on the same
model file), then in interleaved rounds (load changes on a shared machine hit every variant
alike) measures for each: one client (sequential requests: latency p50 and req/s), 8 clients
(closed loop: req/s, errors, p50/p99), and one client while a CPU hog spins on core 0 (a
neighbour). Idle servers cost nothing between their turns (no thread spins). Checks the
throughput targets, comparing the last variant ("after") with the first ("before"),
and writes everything to JSON.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.http_load import REPO, LoadResult, Server, closed_loop, merge_results, run_server
from bench.images import bench_images
from bench.report import check, command_line, write_json
from service.settings import model_display_path

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.throughput",
                                description=__doc__.splitlines()[0])  # fmt: skip
    p.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="ONNX file to serve")
    p.add_argument("--variant", action="append", metavar="NAME:KEY=VALUE,...",
                   help=f"server settings (repeatable; first = baseline, last = candidate); "
                   f"default: {BEFORE!r} and {AFTER!r}")  # fmt: skip
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
    for t in result["targets"]:
        lines.append(f"- {t['status']}: {t['target']} = {t['value']} ({t['limit']}; "
                     f"{t['detail']})")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    variants = dict(parse_variant(v) for v in (a.variant or [BEFORE, AFTER]))
    images, origin = bench_images(a.image)
    body = images["500x375"]
    result: dict[str, Any] = {
        "command": command_line("bench.throughput", argv),
        "environment": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                        "load_start": round(os.getloadavg()[0], 2)},
        "model": model_display_path(a.model),
        "image": f"{origin}, 500x375 JPEG ({len(body)} bytes)",
        "clients": a.clients, "duration_s": a.duration, "rounds": a.rounds,
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fcos-throughput.") as tmp, ExitStack() as stack:
        servers = {}
        for name, env in variants.items():
            log = Path(tmp) / f"server-{name}.log"
            servers[name] = server = stack.enter_context(run_server(a.model, log, env))
            ready = server.wait_ready(a.ready_timeout)
            print(f"[throughput] {name} ready in {ready:.1f} s", flush=True)
        measured = measure(a, servers, body)
    result["variants"] = {n: {"env": variants[n], **measured[n]} for n in variants}
    names = list(variants)
    result["targets"] = targets(measured[names[0]], measured[names[-1]])
    result["environment"]["load_end"] = round(os.getloadavg()[0], 2)
    print(format_table(result))
    write_json(a.json, result, "throughput")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
