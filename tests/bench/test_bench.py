"""`python -m bench` works end to end (tiny preset, a handful of requests) and its pieces are
deterministic. No timing assertions: the numbers depend on the machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.images import SIZES, bench_images, synthetic_photo
from bench.report import summary, targets

REPO = Path(__file__).resolve().parents[2]


def test_images_are_deterministic_jpegs() -> None:
    a, origin = bench_images(seed=3)
    b, _ = bench_images(seed=3)
    assert a == b and set(a) == set(SIZES) and "synthetic" in origin
    assert all(data[:2] == b"\xff\xd8" for data in a.values())  # JPEG SOI marker
    assert synthetic_photo(64, 48, seed=1).size == (64, 48)


def test_images_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    synthetic_photo(320, 200, seed=5).save(path)
    images, origin = bench_images(path)
    assert str(path) in origin and set(images) == set(SIZES)


def test_summary_and_targets_logic() -> None:
    s = summary([0.010, 0.020, 0.030, 0.040])
    assert s["n"] == 4 and s["p50_ms"] == 25.0 and s["min_ms"] == 10.0
    level = {"errors": 0, "statuses": {"200": 10}, "throughput_rps": 10.0,
             "latency": {"p50_ms": 100.0, "p99_ms": 200.0}}  # fmt: skip
    run = {
        "torch_shape": "512x512",
        "torch": {"p50_ms": 1000.0},
        "raw": {"500x375": {"p50_ms": 100.0}, "500x500": {"p50_ms": 130.0}},
        "http": {"500x375": {"p50_ms": 105.0}, "500x500": {"p50_ms": 140.0}},
        "concurrency": [{**level, "clients": 1}, {**level, "clients": 8, "throughput_rps": 9.0}],
    }
    by_status = [(t["status"], round(t["value"], 3)) for t in targets(run)]
    assert by_status == [("PASS", 0.105), ("PASS", 1.05), ("PASS", 0.75), ("PASS", 0.0),
                         ("FAIL", 0.9), ("PASS", 2.0)]  # fmt: skip
    run["concurrency"] = []
    assert [t["status"] for t in targets(run)][3:] == ["n/a"] * 3


@pytest.mark.slow  # ~40 s: exports, quantizes and serves the tiny preset twice
def test_bench_command_reduced(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "bench", "--preset", "tiny", "--precision", "fp32,int8",
           "--calibration-images", "2", "--requests", "2", "--torch-runs", "1",
           "--concurrency", "1,2", "--duration", "0.5", "--max-requests", "6",
           "--threads", "1", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "targets:" in proc.stdout and "POST /detect 500x375" in proc.stdout
    result = json.loads(out.read_text())
    assert [run["model"]["precision"] for run in result["runs"]] == ["fp32", "int8"]
    assert "synthetic" in result["runs"][1]["model"]["note"]
    for run in result["runs"]:
        assert set(run["http"]) == set(SIZES) and run["http"]["500x375"]["n"] >= 2
        assert run["raw"]["500x375"]["p50_ms"] > 0 and run["torch"]["n"] >= 1
        assert [lvl["clients"] for lvl in run["concurrency"]] == [1, 2]
        assert all(lvl["errors"] == 0 for lvl in run["concurrency"])
        assert {t["status"] for t in run["targets"]} <= {"PASS", "FAIL", "n/a"}
        assert len(run["targets"]) == 6


def test_existing_model_reads_precision_from_metadata(tiny_onnx_path: Path) -> None:
    from bench.models import existing_model

    given = existing_model(tiny_onnx_path)
    assert (given.precision, given.path, given.seconds) == ("fp32", tiny_onnx_path, 0.0)
    assert given.size_mb == pytest.approx(tiny_onnx_path.stat().st_size / 1e6)


def test_model_without_its_weights_is_refused(tiny_onnx_path: Path) -> None:
    from bench.run import main

    assert main(["--model", str(tiny_onnx_path)]) == 2
