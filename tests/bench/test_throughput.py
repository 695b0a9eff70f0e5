"""`python -m bench.throughput` end to end on the tiny model (two variants, short rounds, the CPU
hog included) and its target logic. No timing assertions: the numbers depend on the machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.throughput import RUNTIMES, main, parse_variant, runtime_targets, targets


def _variant(single_rps: float, single_p50: float, sat_rps: float, hog_p50: float) -> dict:
    def level(rps: float, p50: float, p99: float) -> dict:
        return {"throughput_rps": rps, "errors": 0, "statuses": {"200": 10},
                "latency": {"p50_ms": p50, "p99_ms": p99}}  # fmt: skip

    return {"single": level(single_rps, single_p50, 2 * single_p50),
            "saturated": level(sat_rps, 100.0, 250.0), "hog": level(1.0, hog_p50, hog_p50)}


def test_parse_variant() -> None:
    assert parse_variant("after:") == ("after", {})
    assert parse_variant("b:DETECTOR_WORKERS=1,DETECTOR_SPINNING=true") == (
        "b", {"DETECTOR_WORKERS": "1", "DETECTOR_SPINNING": "true"})
    for bad in (":DETECTOR_X=1", "n:WORKERS=1"):
        with pytest.raises(ValueError):
            parse_variant(bad)


def test_targets_compare_after_with_before() -> None:
    before = _variant(50.0, 20.0, 50.0, 30.0)
    good = targets(before, _variant(60.0, 19.0, 100.0, 22.0))
    assert [t["status"] for t in good] == ["PASS"] * 6
    assert good[0]["value"] == 2.0 and good[2]["value"] == 2.5
    bad = targets(before, _variant(60.0, 21.0, 55.0, 30.0))
    assert [t["status"] for t in bad] == ["FAIL", "PASS", "PASS", "FAIL", "FAIL", "FAIL"]


def test_runtime_targets_compare_auto_with_the_best_configuration() -> None:
    assert [parse_variant(v)[0] for v in RUNTIMES] == ["ort", "ov-f32", "ov-bf16", "auto"]
    measured = {"ort": _variant(30.0, 33.0, 60.0, 40.0),
                "ov-f32": _variant(35.0, 28.0, 70.0, 40.0),
                "ov-bf16": _variant(40.0, 25.0, 80.0, 40.0)}  # fmt: skip
    model_ms = {"ort": 30.0, "ov-f32": 28.0, "ov-bf16": 24.0}  # 2 cores: 83.3 req/s at most
    good = runtime_targets({**measured, "auto": _variant(40.0, 25.5, 78.0, 40.0)}, model_ms, 2)
    assert [t["status"] for t in good] == ["PASS"] * 4
    assert good[0]["value"] == 0.975 and good[1]["value"] == 1.02 and good[2]["value"] == 0.936
    assert "ov-bf16" in good[0]["detail"] and "ov-bf16" in good[2]["detail"]
    bad = runtime_targets({**measured, "auto": _variant(30.0, 33.0, 60.0, 40.0)}, model_ms, 2)
    assert [t["status"] for t in bad] == ["FAIL", "FAIL", "FAIL", "PASS"]
    assert len(runtime_targets({**measured, "auto": measured["ort"]}, {}, 2)) == 3


@pytest.mark.slow  # ~15 s: two servers on the tiny model, three short loads each
def test_throughput_command_reduced(tmp_path: Path, tiny_onnx_path: Path) -> None:
    out = tmp_path / "throughput.json"
    code = main(["--model", str(tiny_onnx_path), "--duration", "0.4", "--rounds", "1",
                 "--clients", "2", "--variant", "one:DETECTOR_WORKERS=1,DETECTOR_THREADS=1",
                 "--variant", "two:DETECTOR_WORKERS=2", "--json", str(out)])  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    assert list(result["variants"]) == ["one", "two"]
    for v in result["variants"].values():
        assert v["saturated"]["errors"] == 0 and v["single"]["latency"]["n"] > 0
        assert v["hog"]["latency"]["n"] > 0
    assert result["variants"]["two"]["env"] == {"DETECTOR_WORKERS": "2"}
    assert len(result["targets"]) == 6
