"""bench.repository: RSS and /detect p50 of a real server with N models (on the tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.repository import main


@pytest.mark.slow
def test_figures_for_one_and_two_models(tiny_onnx_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    argv = ["--model", str(tiny_onnx_path), "--counts", "1,2", "--requests", "4",
            "--threads", "1", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    one, two = doc["rows"]
    assert (one["models"], two["models"]) == (1, 2)
    assert set(two["memory_per_model_mib"]) == {"default", "m1"}
    assert two["rss_mib"] > 0 and one["detect_p50_ms_default"] > 0
    assert doc["command"].startswith("python -m bench.repository --model")
