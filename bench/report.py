"""Latency summaries, the speed targets as PASS/FAIL checks, and the printed table."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# The speed targets, all ratios measured within one run.
DETECT_VS_TORCH_MAX = 0.20
SERVICE_OVERHEAD_MAX = 1.10
ASPECT_COST_MAX = 0.80
CONCURRENT_P99_OVER_P50_MAX = 3.0
TARGET_CLIENTS = 8


def summary(samples_s: list[float]) -> dict[str, float]:
    """p50/p90/p99/mean/min in milliseconds (linear interpolation between order statistics)."""
    if not samples_s:
        return {"n": 0}
    ms = np.asarray(samples_s, dtype=np.float64) * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"n": int(ms.size), "p50_ms": round(float(p50), 2), "p90_ms": round(float(p90), 2),
            "p99_ms": round(float(p99), 2), "mean_ms": round(float(ms.mean()), 2),
            "min_ms": round(float(ms.min()), 2)}  # fmt: skip


def check(name: str, value: float | None, limit: float, op: str, detail: str) -> dict[str, Any]:
    if value is None:
        return {"target": name, "value": None, "limit": limit, "status": "n/a", "detail": detail}
    ok = value <= limit if op == "<=" else value >= limit
    return {
        "target": name,
        "value": round(value, 3),
        "limit": f"{op} {limit:g}",
        "status": "PASS" if ok else "FAIL",
        "detail": detail,
    }


def _p50(section: dict[str, Any], key: str) -> float | None:
    value = section.get(key, {}).get("p50_ms")
    return float(value) if value else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The speed targets for one precision run (see bench/RESULTS.md)."""
    http, raw = run["http"], run["raw"]
    detect, detect_sq = _p50(http, "500x375"), _p50(http, "500x500")
    raw_43 = _p50(raw, "500x375")
    checks = [
        check(f"/detect 500x375 p50 / PyTorch eager fp32 {run.get('torch_shape')} p50",
               _ratio(detect, _p50(run, "torch")), DETECT_VS_TORCH_MAX, "<=",
               "same weights, same threads"),
        check("/detect 500x375 p50 / raw session.run p50 (same tensor)",
               _ratio(detect, raw_43), SERVICE_OVERHEAD_MAX, "<=",
               "raw runs alternate one-to-one with the requests; vs back-to-back raw runs: "
               f"{_fmt(_ratio(detect, _p50(raw, 'back_to_back')))}"),
        check("/detect 500x375 p50 / /detect 500x500 p50",
               _ratio(detect, detect_sq), ASPECT_COST_MAX, "<=",
               f"4:3 vs square; raw session.run ratio "
               f"{_fmt(_ratio(raw_43, _p50(raw, '500x500')))}"),
    ]  # fmt: skip
    levels = {level["clients"]: level for level in run.get("concurrency", [])}
    single, many = levels.get(1), levels.get(TARGET_CLIENTS)
    if single is None or many is None:
        detail = f"needs concurrency levels 1 and {TARGET_CLIENTS}"
        checks += [check(f"{TARGET_CLIENTS} clients: {what}", None, 0.0, "<=", detail)
                   for what in ("errors", "throughput / 1-client", "p99 / p50")]  # fmt: skip
        return checks
    lat = many["latency"]
    checks += [
        check(f"{TARGET_CLIENTS} clients: errors", float(many["errors"]), 0.0, "<=",
               f"statuses {many['statuses']}"),
        check(f"{TARGET_CLIENTS} clients: throughput / 1-client throughput",
               _ratio(many["throughput_rps"], single["throughput_rps"]), 1.0, ">=",
               f"{many['throughput_rps']:.2f} vs {single['throughput_rps']:.2f} req/s"),
        check(f"{TARGET_CLIENTS} clients: p99 / p50",
               _ratio(lat.get("p99_ms"), lat.get("p50_ms")), CONCURRENT_P99_OVER_P50_MAX,
               "<=", f"p50 {lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms"),
    ]  # fmt: skip
    return checks


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _row(label: str, s: dict[str, Any]) -> str:
    return (f"  {label:<44}{_fmt(s.get('p50_ms'), '.1f'):>9}{_fmt(s.get('p90_ms'), '.1f'):>9}"
            f"{_fmt(s.get('p99_ms'), '.1f'):>9}{s.get('n', 0):>6}")  # fmt: skip


def format_run(run: dict[str, Any]) -> str:
    """A plain-text table for one precision run."""
    m = run["model"]
    lines = [
        f"== {m['name']} {m['precision']} ({m['size_mb']:.1f} MB): {m['source']}",
        f"  {'latency (ms)':<44}{'p50':>9}{'p90':>9}{'p99':>9}{'n':>6}",
        _row(f"PyTorch eager fp32 {run['torch_shape']} (reference)", run["torch"]),
    ]
    for name, hw in run["tensor_shapes"].items():
        lines.append(_row(f"ORT session.run {hw} ({name} JPEG)", run["raw"][name]))
    for key, label in (
        ("back_to_back", "ORT session.run 500x375, back to back"),
        ("batch2_per_image", "ORT session.run batch 2 x 500x375, per image"),
    ):
        if run["raw"].get(key):
            lines.append(_row(label, run["raw"][key]))
    for name in run["http"]:
        lines.append(_row(f"POST /detect {name} JPEG (sequential)", run["http"][name]))
    for name, stages in run["server_stages_p50_ms"].items():
        parts = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
        lines.append(f"  server stages p50, {name}: {parts}")
    if run.get("concurrency"):
        lines.append(f"  {'clients':<10}{'req/s':>8}{'p50':>9}{'p90':>9}{'p99':>9}"
                     f"{'ok':>7}{'errors':>8}")  # fmt: skip
        for level in run["concurrency"]:
            lat = level["latency"]
            lines.append(
                f"  {level['clients']:<10}{level['throughput_rps']:>8.2f}"
                f"{_fmt(lat.get('p50_ms'), '.1f'):>9}{_fmt(lat.get('p90_ms'), '.1f'):>9}"
                f"{_fmt(lat.get('p99_ms'), '.1f'):>9}{lat.get('n', 0):>7}{level['errors']:>8}"
            )
    lines.append("  targets:")
    for t in run["targets"]:
        lines.append(f"    [{t['status']:>4}] {t['target']}: {_fmt(t['value'])} "
                     f"(target {t['limit']}) - {t['detail']}")  # fmt: skip
    return "\n".join(lines)


def format_report(result: dict[str, Any]) -> str:
    env = result["environment"]
    head = [
        f"FCOS CPU benchmark - {env['cpu']} ({env['cpus']} CPUs), threads {env['threads']}, "
        f"onnxruntime {env['onnxruntime']}, torch {env['torch']}",
        f"load average 1 min: {env['load_start']} at start, {env['load_end']} at end; "
        f"images: {result['images']['origin']}",
    ]
    return "\n".join([*head, *(format_run(run) for run in result["runs"])])


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """How a bench was invoked, for its result file: `python -m MODULE ARGS`."""
    return " ".join([f"python -m {module}", *(argv if argv is not None else sys.argv[1:])])


def write_json(path: Path, result: dict[str, Any], tag: str) -> None:
    """Write a bench's result file (creating its folder) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"[{tag}] wrote {path}")
