"""bench.op_profile: ORT profiler events summed per op type and node; a run on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

from bench.op_profile import kernel_times, main, summarise


def test_kernel_times_keep_only_node_kernels() -> None:
    events = [
        {"cat": "Session", "name": "model_run", "dur": 500},
        {"cat": "Node", "name": "conv1_kernel_time", "dur": 30, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "conv1_fence_before", "dur": 1, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "relu_kernel_time", "dur": 10, "args": {"op_name": "Relu"}},
    ]
    assert kernel_times(events) == [("Conv", "conv1", 30.0), ("Relu", "relu", 10.0)]


def test_summarise_per_run_shares() -> None:
    calls = [("Conv", "a", 300.0), ("Conv", "b", 100.0), ("Relu", "r", 100.0)] * 2  # 2 runs
    s = summarise(calls, runs=2, top=2)
    assert s["kernel_ms_per_run"] == 0.5
    assert s["by_op"][0] == {"op": "Conv", "ms": 0.4, "share": 0.8, "nodes": 2}
    assert s["by_op"][1]["op"] == "Relu" and s["by_op"][1]["nodes"] == 1
    assert [n["node"] for n in s["top_nodes"]] == ["a", "b"]


def test_run_on_the_tiny_model(tiny_onnx_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    argv = ["--model", str(tiny_onnx_path), "--height", "64", "--width", "96", "--runs", "3",
            "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["kernel_ms_per_run"] > 0 and result["input"] == [1, 3, 64, 96]
    assert abs(sum(r["share"] for r in result["by_op"]) - 1) < 0.01
    assert any(r["op"] in ("Conv", "QLinearConv") for r in result["by_op"])
