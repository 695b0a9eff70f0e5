"""`python -m training.compare` end to end on the tiny ONNX model and synthetic VOC tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export.postprocess import PostprocessConfig
from training.evaluation import compare as cmp
from training.evaluation.detectors import load_onnx_or_checkpoint
from training.evaluation.scoring import evaluate_detector


def test_a_model_against_itself(tiny_onnx_path: Path, voc_root: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp.json"
    rc = cmp.main(["--model", str(tiny_onnx_path), "--data-root", str(voc_root),
                   "--bootstrap", "30", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["diff"]["value"] == data["diff"]["low"] == data["diff"]["high"] == 0.0
    assert data["a_wins"] == 0.0 and data["a"] == data["b"]
    assert data["split"] == "val" and "NMS IoU 0.5" in data["model"]
    text = capsys.readouterr().out
    assert "A - B  +0.0000" in text and "paired draws" in text


def test_two_settings_score_as_evaluate_does(tiny_onnx_path: Path, voc_root: Path,
                                             tmp_path: Path) -> None:
    out = tmp_path / "cmp.json"
    rc = cmp.main(["--model", str(tiny_onnx_path), "--data-root", str(voc_root),
                   "--nms-iou", "0.6", "--against", str(tiny_onnx_path),
                   "--against-nms-iou", "0.3", "--bootstrap", "20", "--seed", "1",
                   "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    from model.config import VOC_CLASSES
    from training.data.voc import load_voc

    samples = load_voc(voc_root, "val")
    detector = load_onnx_or_checkpoint(tiny_onnx_path)

    for key, iou in (("a", 0.6), ("b", 0.3)):
        m = evaluate_detector(detector, samples, VOC_CLASSES,
                              postprocess=PostprocessConfig(nms_iou=iou))
        assert data[key]["value"] == pytest.approx(m["map50"], abs=1e-12)
    assert data["diff"]["value"] == pytest.approx(data["a"]["value"] - data["b"]["value"])
    assert "NMS IoU 0.3" in data["against"]


def test_several_runs_a_side(tiny_onnx_path: Path, voc_root: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    # Runs of one side are averaged: two copies of one model score as that model does.
    base = ["--model", str(tiny_onnx_path), "--data-root", str(voc_root), "--nms-iou", "0.6",
            "--against-nms-iou", "0.3", "--bootstrap", "20"]
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    assert cmp.main([*base, "--against", str(tiny_onnx_path), "--json", str(one)]) == 0
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(tiny_onnx_path.read_bytes())
    assert cmp.main([*base, "--also", str(copy), "--against", str(tiny_onnx_path),
                     "--against", str(copy), "--json", str(two)]) == 0
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    for key in ("a", "b", "diff"):
        assert b[key] == pytest.approx(a[key])
    assert b["runs"] == {"a": [str(tiny_onnx_path), str(copy)],
                         "b": [str(tiny_onnx_path), str(copy)]}
    assert "mean of 2 runs" in b["model"] and "NMS IoU 0.3" in b["against"]
    assert "mean of 2 runs" in capsys.readouterr().out


def test_bad_input(tiny_onnx_path: Path, voc_root: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cmp.main(["--model", str(tiny_onnx_path), "--data-root", str(voc_root),
                  "--bootstrap", "0"])
    rc = cmp.main(["--model", str(tiny_onnx_path), "--data-root", str(voc_root),
                   "--classes", "cat,dog"])
    assert rc == 2 and "lack the model's classes" in capsys.readouterr().err
