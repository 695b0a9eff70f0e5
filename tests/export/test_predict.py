"""`python -m export.predict` on the tiny perturbed model (tests/export/conftest.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from export import predict
from export.exporter.parity import synthetic_image
from export.runtime import OnnxDetector

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    synthetic_image(160, 120, seed=0).save(root / "a.jpg", quality=95)
    synthetic_image(120, 160, seed=1).save(root / "sub" / "b.png")
    (root / "notes.txt").write_text("not an image")
    return root


def read_lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]


def test_a_folder_gives_json_lines_and_annotated_images(
    perturbed_onnx: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert predict.main(["--model", str(perturbed_onnx), str(photos), "--output", str(out),
                         "--score-threshold", "0.05", "--quiet"]) == 0  # fmt: skip
    records = read_lines(out)
    assert [Path(r["image"]).name for r in records] == ["a.jpg", "b.png"]
    detector = OnnxDetector(perturbed_onnx)
    names = detector.metadata.class_names
    for r, path in zip(records, (photos / "a.jpg", photos / "sub" / "b.png"), strict=True):
        # the same detections as the runtime's own pipeline with the same settings
        cfg = predict.candidate_config(0.05, 100, 0.5)
        want = detector.detect_bytes(path.read_bytes(), cfg).detections
        assert len(r["detections"]) == len(want.scores) > 0
        assert [d["class_name"] for d in r["detections"]] == [names[c] for c in want.class_ids]
        assert r["detections"][0]["box"] == pytest.approx(want.boxes[0].tolist(), abs=0.01)
        assert all(d["score"] >= 0.05 for d in r["detections"])
    with Image.open(out / "images" / "a.jpg") as a, Image.open(out / "images/sub/b.png") as b:
        assert a.size == (160, 120) and b.size == (120, 160) and b.format == "PNG"


def test_openvino_backend_gives_the_same_detections(
    perturbed_onnx: Path, photos: Path, tmp_path: Path
) -> None:
    """--backend openvino --ov-precision f32: the same records as ONNX Runtime (boxes within
    0.05 px, scores within 1e-3; see tests/export/test_openvino_runtime.py for bf16)."""
    pytest.importorskip("openvino")
    records = {}
    for backend in ("onnxruntime", "openvino"):
        out = tmp_path / backend
        assert predict.main(["--model", str(perturbed_onnx), str(photos), "--output", str(out),
                             "--score-threshold", "0.05", "--no-images", "--quiet",
                             "--backend", backend, "--ov-precision", "f32"]) == 0  # fmt: skip
        records[backend] = read_lines(out)
    for ref, got in zip(records["onnxruntime"], records["openvino"], strict=True):
        assert ref["image"] == got["image"] and len(ref["detections"]) > 0
        assert [d["class_id"] for d in got["detections"]] == [
            d["class_id"] for d in ref["detections"]
        ]
        for r, g in zip(ref["detections"], got["detections"], strict=True):
            assert g["box"] == pytest.approx(r["box"], abs=0.05)
            assert g["score"] == pytest.approx(r["score"], abs=1e-3)


def test_class_filter_threshold_cap_and_coco_results(
    perturbed_onnx: Path, photos: Path, tmp_path: Path
) -> None:
    out, coco = tmp_path / "out", tmp_path / "coco.json"
    argv = ["--model", str(perturbed_onnx), str(photos / "a.jpg"), str(photos / "sub" / "*.png"),
            "--output", str(out), "--score-threshold", "0.05", "--classes", "dog",
            "--max-detections", "3", "--coco-results", str(coco), "--no-images", "--quiet"]
    assert predict.main(argv) == 0
    records = read_lines(out)
    dets = [d for r in records for d in r["detections"]]
    assert dets and all(d["class_name"] == "dog" for d in dets)
    assert all(len(r["detections"]) <= 3 for r in records)
    results = json.loads(coco.read_text())
    assert len(results) == len(dets) and {r["image_id"] for r in results} <= {1, 2}
    assert all(r["category_id"] == 2 for r in results)  # dog = class 1 -> category 2
    first = records[0]["detections"][0]["box"]
    assert results[0]["bbox"] == pytest.approx([first[0], first[1], first[2] - first[0],
                                                first[3] - first[1]], abs=0.02)  # fmt: skip
    assert not (out / "images").exists()


def test_coco_ids_from_an_annotation_file(
    perturbed_onnx: Path, photos: Path, tmp_path: Path
) -> None:
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 42, "file_name": "x/a.jpg"}], "annotations": [],
                              "categories": [{"id": 7, "name": "cat"}, {"id": 8, "name": "dog"},
                                             {"id": 9, "name": "person"}]}))  # fmt: skip
    coco = tmp_path / "coco.json"
    assert predict.main(["--model", str(perturbed_onnx), str(photos / "a.jpg"), "--output",
                         str(tmp_path / "o"), "--score-threshold", "0.05", "--coco-results",
                         str(coco), "--coco-gt", str(gt), "--quiet"]) == 0  # fmt: skip
    results = json.loads(coco.read_text())
    assert results and {r["image_id"] for r in results} == {42}
    assert {r["category_id"] for r in results} <= {7, 8, 9}


def test_unreadable_images_are_reported_and_skipped(
    perturbed_onnx: Path, photos: Path, tmp_path: Path
) -> None:
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    out = tmp_path / "out"
    assert predict.main(["--model", str(perturbed_onnx), str(photos), "--output", str(out),
                         "--quiet"]) == 0  # fmt: skip
    records = read_lines(out)
    assert [("error" in r) for r in records] == [False, True, False]


@pytest.mark.parametrize("argv", [["missing/*.jpg"], ["a.jpg", "--classes", "zebra"]])
def test_bad_inputs_are_clear_errors(
    perturbed_onnx: Path, photos: Path, tmp_path: Path, argv: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    argv = [str(photos / a) if a.endswith(".jpg") else a for a in argv]
    out = str(tmp_path / "o")
    assert predict.main(["--model", str(perturbed_onnx), *argv, "--output", out]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.fixture()
def model_dir(perturbed_onnx: Path, tmp_path: Path) -> Path:
    """A model repository: `birds.onnx`, and `cars` in Triton's layout (versions 1 and 2)."""
    root = tmp_path / "models"
    for version in ("1", "2"):
        (root / "cars" / version).mkdir(parents=True)
        shutil.copy(perturbed_onnx, root / "cars" / version / "model.onnx")
    shutil.copy(perturbed_onnx, root / "birds.onnx")
    (root / "notes").mkdir()  # a folder without versions: not a model
    return root


def test_a_model_by_its_name_in_the_repository(
    perturbed_onnx: Path, photos: Path, model_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """--model NAME is looked up in --model-dir (default: DETECTOR_MODEL_DIR) as the service
    does: the same detections as the file itself."""
    monkeypatch.delenv("DETECTOR_MODEL_DIR", raising=False)
    common = [str(photos), "--score-threshold", "0.05", "--no-images"]
    assert predict.main(["--model", str(perturbed_onnx), *common, "--quiet",
                         "--output", str(tmp_path / "file")]) == 0  # fmt: skip
    def found(out: Path) -> list[tuple[str, list[dict]]]:  # the records less their timings
        return [(r["image"], r["detections"]) for r in read_lines(out)]

    want = found(tmp_path / "file")
    assert want and any(dets for _, dets in want)
    capsys.readouterr()
    assert predict.main(["--model", "birds", "--model-dir", str(model_dir), *common,
                         "--output", str(tmp_path / "birds")]) == 0  # fmt: skip
    assert found(tmp_path / "birds") == want
    assert f"model birds: {model_dir / 'birds.onnx'}" in capsys.readouterr().err

    monkeypatch.setenv("DETECTOR_MODEL_DIR", str(model_dir))
    for name, version in (("cars", "2"), ("cars:1", "1"), ("cars:2", "2")):  # newest, or pinned
        out = tmp_path / name.replace(":", "-")
        assert predict.main(["--model", name, *common, "--output", str(out)]) == 0
        assert f"model {name}: {model_dir / 'cars' / version / 'model.onnx'}" in (
            capsys.readouterr().err)  # fmt: skip
        assert found(out) == want
    # `fcos predict` runs the same module: the flags (and the variable) pass through
    proc = subprocess.run([sys.executable, "-m", "fcos", "predict", "--model", "birds", *common,
                           "--quiet", "--output", str(tmp_path / "fcos")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert found(tmp_path / "fcos") == want


@pytest.mark.parametrize(("model", "with_dir", "message"), [
    ("ghost", True, "no such file, nor a model named 'ghost' in {dir}; models: birds, cars"),
    ("cars:7", True, "model 'cars' has no version 7 (versions: 1, 2)"),
    ("birds:1", True, "model 'birds' has no version 1 (it is one file, no versions)"),
    ("birds", False, "no such file; to use a model by its name, give --model-dir or set "
                     "DETECTOR_MODEL_DIR"),
    ("missing/model.onnx", True, "no such file"),
])  # fmt: skip
def test_unknown_model_names_are_clear_errors(
    model_dir: Path, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], model: str, with_dir: bool, message: str,
) -> None:  # fmt: skip
    monkeypatch.delenv("DETECTOR_MODEL_DIR", raising=False)
    flags = ["--model-dir", str(model_dir)] if with_dir else []
    assert predict.main(["--model", model, *flags, str(photos), "--output",
                         str(tmp_path / "o")]) == 2  # fmt: skip
    assert f"error: --model {model}: {message.format(dir=model_dir)}\n" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_help_documents_model_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        predict.parse_args(["--help"])
    text = capsys.readouterr().out
    assert "--model FILE|NAME" in text and "--model-dir DIR" in text
    assert "DETECTOR_MODEL_DIR" in text and "NAME:VERSION" in text


@pytest.mark.slow
def test_the_cli_runs_without_torch(perturbed_onnx: Path, photos: Path, tmp_path: Path) -> None:
    code = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = ['predict', *sys.argv[1:]];"
            "runpy.run_module('export.predict', run_name='__main__')")  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", code, "--model", str(perturbed_onnx), str(photos),
         "--output", str(tmp_path / "o")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "2 images" in proc.stdout and "2/2" in proc.stderr  # the progress bar
