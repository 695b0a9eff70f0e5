"""`python -m training.evaluation.error_analysis` end to end on the tiny synthetic VOC tree,
and its report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.postprocess import Detections, PostprocessConfig
from training.evaluation import error_analysis as er
from training.metrics import GroundTruth, Predictions
from training.metrics.error_breakdown import KINDS, error_breakdown

NAMES = ("cat", "dog", "person")


def test_cli_end_to_end(tiny_onnx_path: Path, voc_root: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "errors.json"
    # Threshold 0: the untrained tiny model's near-prior scores still give detections.
    rc = er.main(["--model", str(tiny_onnx_path), "--data-root", str(voc_root),
                  "--score-threshold", "0", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    # cat, dog | person (bird: not a model class; dog: difficult) | person, cat
    assert data["objects"] == 5 and data["num_images"] == 3
    assert data["detections"] == sum(data[k] for k in KINDS) > 0
    assert set(data["per_class"]) == set(NAMES)
    assert sum(v["objects"] for v in data["by_size"].values()) == 5
    assert 0 <= data["missed"] <= 5
    text = capsys.readouterr().out
    assert "found by object size" in text and "score >= 0.0" in text


def test_cli_uses_the_services_settings_for_the_threshold(
    tiny_onnx_path: Path, voc_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[PostprocessConfig] = []

    def fake_run(detector: object, samples: list, cfg: PostprocessConfig) -> list[Detections]:
        seen.append(cfg)
        return [Detections.empty() for _ in samples]

    monkeypatch.setattr(er, "run_detector", fake_run)
    assert er.main(["--model", str(tiny_onnx_path), "--data-root", str(voc_root),
                    "--score-threshold", "0.5"]) == 0
    assert seen[0].candidate_threshold == pytest.approx(0.25) and seen[0].score_threshold == 0.5


def test_cli_rejects_a_dataset_without_the_model_classes(
    tiny_onnx_path: Path, voc_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = er.main(["--model", str(tiny_onnx_path), "--data-root", str(voc_root),
                  "--classes", "cat,bird"])
    assert rc == 2 and "lack the model's classes" in capsys.readouterr().err


def test_report_and_json_agree() -> None:
    gt = GroundTruth(np.array([[0, 0, 10, 10], [20, 0, 30, 10.0]]), np.array([0, 1]))
    pred = Predictions(np.array([[0, 0, 10, 10], [20, 0, 30, 10.0], [50, 50, 60, 60.0]]),
                       np.array([0.9, 0.8, 0.7]), np.array([0, 0, 2]))
    b = error_breakdown([gt], [pred], 3)
    data = er.breakdown_dict(b, NAMES)
    assert data["correct"] == 1 and data["confusion"] == 1 and data["background"] == 1
    assert data["confusions"] == [{"predicted": "cat", "true": "dog", "count": 1}]
    assert data["per_class"]["dog"] == {"objects": 1, "missed": 1, "detections": 0,
                                        **{k: 0 for k in KINDS}}
    text = er.format_breakdown(b, NAMES)
    assert "cat -> dog 1" in text
    all_row = next(line for line in text.splitlines() if line.startswith("all"))
    assert all_row.split()[1:4] == ["2", "50.0%", "3"]  # objects, found, detections
