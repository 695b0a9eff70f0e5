"""bench.spinning: a reduced run on the tiny model writes every mode, quiet and beside a hog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.spinning import MODES, main
from export.spin_policy import PROBE_RUNS, WINDOW


@pytest.mark.slow
def test_reduced_run(tiny_onnx_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "spinning.json"
    argv = ["--model", str(tiny_onnx_path), "--threads", "2", "--blocks", "2", "--runs", "3",
            "--gap-ms", "0", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(out.read_text())
    for condition in ("quiet", "hog"):
        assert set(result[condition]) == set(MODES)
        assert all(row["p50_ms"] > 0 for row in result[condition].values())
    assert result["quiet"]["spinning"]["vs_quiet_spinning"] == 1.0
    assert result["threads"] == 2
    # The auto detector's runs: 5 warm-up, then blocks x runs quiet and as many beside the hog.
    # Each switch off spinning takes a full WINDOW of spinning runs, each switch back a probe.
    auto_runs = 5 + 2 * 2 * 3
    switches = result["switches"]
    assert isinstance(switches, int) and 0 <= switches <= 2 * auto_runs // (WINDOW + PROBE_RUNS) + 1
