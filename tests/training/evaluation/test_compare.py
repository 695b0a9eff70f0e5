"""`python -m training.compare` end to end on the tiny ONNX model and synthetic VOC tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from export.postprocess import PostprocessConfig
from training.evaluation import compare as cmp
from training.evaluation.detectors import load_onnx_or_checkpoint
from training.evaluation.scoring import evaluate_detector


def evaluate_map50(model: Path, voc_root: Path, **settings: Any) -> float:
    """mAP@0.5 of `model` on the val split as `training.evaluate` scores it, with `settings`."""
    from model.config import VOC_CLASSES
    from training.data.voc import load_voc

    detector = load_onnx_or_checkpoint(model)
    m = evaluate_detector(detector, load_voc(voc_root, "val"), VOC_CLASSES, **settings)
    return float(m["map50"])


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
    for key, iou in (("a", 0.6), ("b", 0.3)):
        m50 = evaluate_map50(tiny_onnx_path, voc_root, postprocess=PostprocessConfig(nms_iou=iou))
        assert data[key]["value"] == pytest.approx(m50, abs=1e-12)
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


def test_two_tile_modes_of_one_model_score_as_evaluate_does(
        tiny_onnx_path: Path, voc_root: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # A tiles 2 x 2 (every EVAL_IMAGES image is larger than the tiny model's 128 px), B not.
    out = tmp_path / "cmp.json"
    rc = cmp.main(["--model", str(tiny_onnx_path), "--data-root", str(voc_root),
                   "--tile", "2", "--against-tile", "off", "--bootstrap", "20",
                   "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    for key, tile in (("a", 2), ("b", "off")):
        m50 = evaluate_map50(tiny_onnx_path, voc_root, tile=tile)
        assert data[key]["value"] == pytest.approx(m50, abs=1e-12)
    assert data["tile"] == {"a": 2, "b": "off"} and data["max_tiles"] == 16
    assert data["tile_merge"] == {"a": "fusion", "b": "fusion"}
    assert data["model"].endswith("(NMS IoU 0.5, tile 2, fusion merge)")
    assert data["against"].endswith("(NMS IoU 0.5)")  # off is not named
    assert "tile 2" in capsys.readouterr().out


def test_each_side_runs_its_own_tile_mode(monkeypatch: pytest.MonkeyPatch, tiny_onnx_path: Path,
                                          voc_root: Path, tmp_path: Path) -> None:
    # A stand-in run_detector: perfect boxes when tiled, none when not, so A - B is +1 exactly
    # when A tiles and B does not; --against-tile defaults to --tile (then A - B = 0).
    import numpy as np

    from export.postprocess import Detections

    calls: list[tuple[object, ...]] = []
    person = 2  # the tiny model's classes, and the VOC split's as loaded: cat, dog, person

    def fake(detector: object, samples: list, cfg: object, tile: object = "off",
             max_tiles: int = 16, tile_merge: str = "fusion") -> list[Detections]:
        calls.append((tile, max_tiles, tile_merge))
        out = []
        for s in samples:
            keep = (np.asarray(s.labels) == person) & ~np.asarray(s.difficult)
            n = int(keep.sum()) if tile != "off" else 0
            out.append(Detections(np.asarray(s.boxes, np.float32)[keep][:n],
                                  np.full(n, 0.9, np.float32), np.full(n, person, np.int64)))
        return out

    monkeypatch.setattr(cmp, "run_detector", fake)
    base = ["--model", str(tiny_onnx_path), "--data-root", str(voc_root), "--bootstrap", "10"]
    out = tmp_path / "cmp.json"
    assert cmp.main([*base, "--tile", "auto", "--against-tile", "off", "--max-tiles", "4",
                     "--json", str(out)]) == 0
    assert calls == [("auto", 4, "fusion"), ("off", 4, "fusion")]
    data = json.loads(out.read_text())
    assert data["diff"]["value"] == pytest.approx(1 / 3)  # person AP 1 vs 0, mean of 3 classes
    calls.clear()
    assert cmp.main([*base, "--tile", "3", "--json", str(out)]) == 0
    assert calls == [(3, 16, "fusion"), (3, 16, "fusion")]
    assert json.loads(out.read_text())["diff"]["value"] == 0.0
    calls.clear()  # one tile mode, two merge rules
    assert cmp.main([*base, "--tile", "2", "--tile-merge", "nms", "--against-tile-merge",
                     "fusion", "--json", str(out)]) == 0
    assert calls == [(2, 16, "nms"), (2, 16, "fusion")]
    data = json.loads(out.read_text())
    assert data["tile_merge"] == {"a": "nms", "b": "fusion"}
    assert "tile 2, nms merge" in data["model"] and "tile 2, fusion merge" in data["against"]


def test_a_bad_tile_mode_is_a_usage_error(tiny_onnx_path: Path, voc_root: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cmp.main(["--model", str(tiny_onnx_path), "--data-root", str(voc_root),
                  "--against-tile", "9"])
    assert "tile must be off, auto or a grid size 1-8" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cmp.main(["--model", str(tiny_onnx_path), "--data-root", str(voc_root),
                  "--tile-merge", "nmm"])
    assert "invalid choice: 'nmm'" in capsys.readouterr().err
