"""`python -m training.evaluate` end to end on a tiny synthetic VOC tree, and its pieces."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export.inferer import Inferer
from export.postprocess import Detections, PostprocessConfig
from training.evaluation import evaluate as ev
from training.evaluation import scoring
from training.evaluation.data import class_mapping
from training.evaluation.detectors import TorchDetector

REPO = Path(__file__).resolve().parents[3]
METRIC_KEYS = ("map50", "map50_95", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")

def check_metrics_json(path: Path, num_images: int) -> dict:
    data = json.loads(path.read_text())
    for key in (*METRIC_KEYS, "per_class", "num_images", "model", "split"):
        assert key in data, key
    for key in METRIC_KEYS:
        assert data[key] is not None and 0.0 <= data[key] <= 1.0, (key, data[key])
    assert set(data["per_class"]) == {"cat", "dog", "person"}
    assert all(0.0 <= v <= 1.0 for v in data["per_class"].values())
    assert data["num_images"] == num_images and data["split"] == "val"
    return data


def test_cli_onnx_end_to_end(tiny_onnx_path: Path, voc_root: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    out_json, img_dir = tmp_path / "m.json", tmp_path / "vis"
    rc = ev.main(["--model", str(tiny_onnx_path), "--data-root", str(voc_root), "--split", "val",
                  "--json", str(out_json), "--save-images", str(img_dir), "--num-images", "2"])
    assert rc == 0
    data = check_metrics_json(out_json, 3)
    assert data["model"] == str(tiny_onnx_path)
    saved = sorted(p.name for p in img_dir.iterdir())
    assert saved == ["img_a.jpg", "img_b.jpg"]
    with Image.open(img_dir / "img_a.jpg") as im:
        assert im.size == (200, 150)
    table = capsys.readouterr().out
    assert "mAP@0.5" in table and "AP@[.5:.95]" in table and "images/s" in table
    assert "interval" not in table and "map50_ci95" not in json.loads(out_json.read_text())


def test_cli_bootstrap_interval(tiny_onnx_path: Path, voc_root: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "m.json"
    argv = ["--model", str(tiny_onnx_path), "--data-root", str(voc_root), "--split", "val",
            "--json", str(out_json), "--bootstrap", "40", "--seed", "3"]
    assert ev.main(argv) == 0
    data = check_metrics_json(out_json, 3)
    ci = data["map50_ci95"]
    assert ci["value"] == pytest.approx(data["map50"]) and ci["low"] <= ci["high"]
    assert 0 < ci["draws"] <= 40  # a draw without any scored object has no mAP
    assert "95% interval" in capsys.readouterr().out
    assert ev.main(argv) == 0  # the same seed draws the same images
    assert json.loads(out_json.read_text())["map50_ci95"] == ci


@pytest.mark.slow  # a fresh interpreter that imports torch (through the VOC loader)
def test_cli_as_module_with_limit_and_class_list(tiny_onnx_path: Path, voc_root: Path,
                                                 tmp_path: Path) -> None:
    out_json = tmp_path / "m.json"
    proc = subprocess.run(
        [sys.executable, "-m", "training.evaluate", "--model", str(tiny_onnx_path),
         "--data-root", str(voc_root), "--split", "val", "--classes", "person,bird,dog,cat",
         "--limit", "2", "--json", str(out_json)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    check_metrics_json(out_json, 2)
    assert "torch" not in json.loads(out_json.read_text())["model"]


def test_cli_errors_when_dataset_lacks_a_model_class(tiny_onnx_path: Path, voc_root: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    rc = ev.main(["--model", str(tiny_onnx_path), "--data-root", str(voc_root),
                  "--classes", "cat,dog,bird"])
    assert rc == 2
    assert "person" in capsys.readouterr().err


def test_cli_openvino_backend_matches_onnxruntime(tiny_onnx_path: Path, voc_root: Path,
                                                  tmp_path: Path) -> None:  # fmt: skip
    """--backend openvino (f32 hint) runs the same pre/post-processing: the same metrics."""
    pytest.importorskip("openvino")
    argv = ["--model", str(tiny_onnx_path), "--data-root", str(voc_root), "--split", "val"]
    results = {}
    for backend in ("onnxruntime", "openvino"):
        out_json = tmp_path / f"{backend}.json"
        flags = ["--backend", backend, "--ov-precision", "f32", "--json", str(out_json)]
        assert ev.main([*argv, *flags]) == 0
        results[backend] = check_metrics_json(out_json, 3)
    for key in (*METRIC_KEYS, "per_class"):
        ort, ov = results["onnxruntime"][key], results["openvino"][key]
        assert ov == pytest.approx(ort, abs=1e-3), key
    assert results["onnxruntime"]["backend"] == "onnxruntime"
    assert results["openvino"]["backend"] == "openvino (f32)"


def test_cli_openvino_backend_missing(monkeypatch: pytest.MonkeyPatch, tiny_onnx_path: Path,
                                      voc_root: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if the extra were not installed
    rc = ev.main(["--model", str(tiny_onnx_path), "--data-root", str(voc_root),
                  "--backend", "openvino"])  # fmt: skip
    assert rc == 2
    assert "pip install 'fcos-detector[openvino]'" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "centerness", "nms_iou"), [
    ((), True, 0.5), (("--no-centerness",), False, 0.5), (("--nms-iou", "0.6"), True, 0.6)])
def test_postprocessing_flags_reach_postprocessing(
    monkeypatch: pytest.MonkeyPatch, tiny_onnx_path: Path, voc_root: Path,
    flags: tuple[str, ...], centerness: bool, nms_iou: float,
) -> None:  # fmt: skip
    seen = []
    real = scoring.run_detector

    def spy(detector: Inferer, samples: list, cfg: PostprocessConfig, *args: int) -> list:
        seen.append(cfg)
        return real(detector, samples, cfg, *args)

    monkeypatch.setattr(scoring, "run_detector", spy)
    argv = ["--model", str(tiny_onnx_path), "--data-root", str(voc_root), "--split", "val"]
    assert ev.main([*argv, *flags]) == 0
    assert [(cfg.centerness, cfg.nms_iou) for cfg in seen] == [(centerness, nms_iou)]


def test_tile_flags_reach_the_tiled_run(monkeypatch: pytest.MonkeyPatch, tiny_onnx_path: Path,
                                        voc_root: Path, tmp_path: Path) -> None:
    seen = []
    real = scoring.run_detector

    def spy(detector: Inferer, samples: list, cfg: PostprocessConfig, *args: object) -> list:
        seen.append(args[2:])  # after batch_size, workers: tile, max_tiles, tile_merge
        return real(detector, samples, cfg, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(scoring, "run_detector", spy)
    out = tmp_path / "m.json"
    argv = ["--model", str(tiny_onnx_path), "--data-root", str(voc_root), "--json", str(out)]
    assert ev.main([*argv, "--tile", "2", "--max-tiles", "3", "--tile-merge", "nms"]) == 0
    assert ev.main(argv) == 0
    assert seen == [(2, 3, "nms"), ("off", 16, "fusion")]
    data = json.loads(out.read_text())
    assert (data["tile"], data["max_tiles"], data["tile_merge"]) == ("off", 16, "fusion")


def test_class_mapping() -> None:
    m = class_mapping(["cat", "dog"], ["dog", "bird", "cat"])
    assert m.tolist() == [1, -1, 0]
    with pytest.raises(ValueError, match="cat"):
        class_mapping(["cat"], ["dog"])


def test_perfect_detections_give_map_one(monkeypatch: pytest.MonkeyPatch, voc_root: Path) -> None:
    """Class names are matched by name: dataset ids (VOC order) != model ids."""
    from training.data.voc import load_voc

    samples = load_voc(voc_root, "val")  # 20 VOC classes: cat=7, dog=11, person=14, bird=2
    from model.config import VOC_CLASSES

    model_names = ("person", "cat", "dog")
    to_model = class_mapping(model_names, VOC_CLASSES)

    def perfect(detector: object, samples: list, *args: object) -> list[Detections]:
        out = []
        for s in samples:
            keep = (to_model[s.labels] >= 0) & ~s.difficult
            n = int(keep.sum())
            out.append(Detections(s.boxes[keep], np.linspace(0.9, 0.5, n, dtype=np.float32),
                                  to_model[s.labels[keep]]))
        return out

    class Fake:
        metadata = type("M", (), {"class_names": model_names})()

        def infer(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            raise AssertionError("not called")

    monkeypatch.setattr(scoring, "run_detector", perfect)
    m = scoring.evaluate_detector(Fake(), samples, VOC_CLASSES)  # type: ignore[arg-type]
    assert m["map50"] == pytest.approx(1.0) and m["map50_95"] == pytest.approx(1.0)
    assert m["per_class"] == {"person": 1.0, "cat": 1.0, "dog": 1.0}
    assert m["num_images"] == 3 and "map50_ci95" not in m
    m = scoring.evaluate_detector(Fake(), samples, VOC_CLASSES,  # type: ignore[arg-type]
                                  bootstrap=50)
    ci = m["map50_ci95"]
    assert ci["value"] == ci["low"] == ci["high"] == pytest.approx(1.0) and ci["draws"] == 50


def test_torch_detector_checkpoint_batching_and_train_mode(voc_root: Path, tmp_path: Path
                                                           ) -> None:
    torch = pytest.importorskip("torch")
    from model.checkpoint import save_weights_only
    from model.config import get_preset
    from model.fcos import FCOS
    from training.data.voc import load_voc

    torch.manual_seed(0)
    cfg = get_preset("tiny", class_names=("cat", "dog", "person"))
    model = FCOS(cfg).train()
    det = TorchDetector(model)
    assert det.metadata.class_names == ("cat", "dog", "person")
    samples = load_voc(voc_root, "val", classes=("cat", "dog", "person"))
    names = ("cat", "dog", "person")
    one = scoring.evaluate_detector(det, samples, names, batch_size=1, workers=1)
    many = scoring.evaluate_detector(det, samples, names, batch_size=3)
    assert model.training  # restored
    for key in METRIC_KEYS:
        a, b = one[key], many[key]
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-6)
    ckpt = tmp_path / "w.pt"
    save_weights_only(model, ckpt, half=False)
    out_json = tmp_path / "m.json"
    rc = ev.main(["--model", str(ckpt), "--data-root", str(voc_root), "--json", str(out_json)])
    assert rc == 0
    check_metrics_json(out_json, 3)


def test_draw_detections_and_json_safe() -> None:
    from training.evaluation.report import DET_COLOUR, GT_COLOUR, draw_detections, json_safe

    image = Image.new("RGB", (120, 90), (128, 128, 128))
    det = Detections(np.array([[60, 40, 110, 80], [0, 0, 5, 5]], np.float32),
                     np.array([0.9, 0.1], np.float32), np.array([1, 0]))
    out = draw_detections(image, np.array([[10.0, 10.0, 50.0, 50.0]]), ["cat"],
                          np.array([False]), det, ["cat", "dog"])
    px = np.asarray(out)
    assert tuple(px[30, 10]) == GT_COLOUR  # left edge of the GT box
    assert tuple(px[60, 110]) == DET_COLOUR  # right edge of the drawn detection
    assert tuple(px[2, 2]) == (128, 128, 128)  # score 0.1 < draw threshold: not drawn
    assert json_safe({"a": math.nan, "b": {"c": 1.0}}) == {"a": None, "b": {"c": 1.0}}
