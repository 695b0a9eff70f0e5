"""`python -m bench.op_profile`: where an ONNX Runtime run of the model spends its time, by
operator type and by node, from ORT's own profiler (the kernels of the optimised graph).

One session (`export.runtime.make_session`, as the service builds it, `--threads`) runs a
letterboxed input of `--height` x `--width` `--runs` times after a warm-up; the kernel times are
summed per op type and per node and written as JSON, the top rows printed. It shows what a
cheaper model per core would have to remove (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import collections
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import command_line, write_json
from bench.throughput import BUNDLED_MODEL
from export.metadata import INPUT_NAME
from export.runtime import make_session
from service.settings import model_display_path

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "op-profile.json"
KERNEL_SUFFIX = "_kernel_time"
WARMUP_RUNS = 5  # profiled too (ORT cannot start later), then dropped


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.op_profile",
                                description=__doc__.splitlines()[0])  # fmt: skip
    p.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--height", type=int, default=288)
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--top", type=int, default=12, help="nodes kept in the JSON and printed")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    return p


def kernel_times(events: list[dict[str, Any]]) -> list[tuple[str, str, float]]:
    """ORT profile events -> (op type, node name, microseconds) per kernel call."""
    return [(e["args"]["op_name"], e["name"].removesuffix(KERNEL_SUFFIX), float(e["dur"]))
            for e in events
            if e.get("cat") == "Node" and e["name"].endswith(KERNEL_SUFFIX)]  # fmt: skip


def summarise(calls: list[tuple[str, str, float]], runs: int, top: int) -> dict[str, Any]:
    by_op: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    by_node: collections.Counter[tuple[str, str]] = collections.Counter()
    for op, node, us in calls:
        by_op[op] += us
        count[op] += 1
        by_node[(op, node)] += us
    total = sum(by_op.values())
    return {
        "kernel_ms_per_run": round(total / runs / 1000, 3),
        "by_op": [{"op": op, "ms": round(us / runs / 1000, 3), "share": round(us / total, 4),
                   "nodes": count[op] // runs} for op, us in by_op.most_common()],
        "top_nodes": [{"op": op, "node": node, "ms": round(us / runs / 1000, 3)}
                      for (op, node), us in by_node.most_common(top)],
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    session = make_session(a.model, a.threads, spinning=False, profiling=True)
    x = np.random.default_rng(0).normal(size=(1, 3, a.height, a.width)).astype(np.float32)
    for _ in range(WARMUP_RUNS + a.runs):
        session.run(None, {INPUT_NAME: x})
    profile_path = Path(session.end_profiling())
    calls = kernel_times(json.loads(profile_path.read_text()))
    profile_path.unlink()
    per_run = len(calls) // (WARMUP_RUNS + a.runs)  # the same kernels every run
    result = {
        "command": command_line("bench.op_profile", argv),
        "model": model_display_path(a.model), "threads": a.threads,
        "input": [1, 3, a.height, a.width], "runs": a.runs,
        **summarise(calls[WARMUP_RUNS * per_run:], a.runs, a.top),
    }  # fmt: skip
    print(f"kernels: {result['kernel_ms_per_run']} ms per run ({a.threads} thread(s))")
    for row in result["by_op"][: a.top]:
        print(f"  {row['op']:<24} {row['ms']:7.3f} ms  {100 * row['share']:5.1f}%  "
              f"x{row['nodes']}")  # fmt: skip
    write_json(a.json, result, "op_profile")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
