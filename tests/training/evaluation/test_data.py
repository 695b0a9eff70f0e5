"""`training.evaluate --data`: YOLO data.yaml splits, and VOC folders of other classes scored
with the classes the model carries (no --classes), unless it shares none of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.data_helpers import make_voc_tree, write_eval_voc
from tests.training.yolo_helpers import roboflow_dataset
from training.evaluation import evaluate as ev


@pytest.fixture(scope="module")
def cat_dog_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from export.exporter.onnx_export import export_onnx
    from model import FCOS, get_preset

    torch.manual_seed(0)
    model = FCOS(get_preset("tiny", class_names=("cat", "dog")))
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "catdog.onnx")


def test_evaluate_a_yolo_test_split(cat_dog_onnx: Path, tmp_path: Path) -> None:
    data = roboflow_dataset(tmp_path / "rf")
    out = tmp_path / "test.json"
    assert ev.main(["--model", str(cat_dog_onnx), "--data", str(data), "--split", "test",
                    "--json", str(out)]) == 0  # fmt: skip
    metrics = json.loads(out.read_text())
    assert metrics["num_images"] == 1 and set(metrics["per_class"]) == {"cat", "dog"}
    assert metrics["split"] == "test"


def test_a_voc_folder_of_other_classes_needs_no_class_list(
    cat_dog_onnx: Path, tmp_path: Path
) -> None:
    voc = write_eval_voc(tmp_path / "voc")  # cat, dog, person and bird objects
    out = tmp_path / "m.json"
    assert ev.main(["--model", str(cat_dog_onnx), "--data", str(voc), "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics["per_class"]) == {"cat", "dog"} and metrics["num_images"] == 3
    # --data-root is the same thing under its old name
    assert ev.main(["--model", str(cat_dog_onnx), "--data-root", str(voc)]) == 0


def test_a_dataset_without_the_models_classes_is_a_clear_error(
    cat_dog_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = roboflow_dataset(tmp_path / "rf", names_yaml="['cat', 'kite']")
    assert ev.main(["--model", str(cat_dog_onnx), "--data", str(data), "--split", "test"]) == 2
    assert "dog" in capsys.readouterr().err
    assert ev.main(["--model", str(cat_dog_onnx), "--data", str(tmp_path / "none")]) == 2


def test_a_voc_folder_sharing_none_of_the_models_classes_is_a_clear_error(
    cat_dog_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cells = {"c": (40, 30, [("RBC", 1, 1, 10, 10, 0), ("WBC", 5, 5, 20, 20, 0)])}
    voc = make_voc_tree(tmp_path / "cells", cells, split="val")  # its classes: RBC, WBC
    assert ev.main(["--model", str(cat_dog_onnx), "--data", str(voc)]) == 2
    err = capsys.readouterr().err
    assert "share none" in err and "RBC" in err and "cat" in err
    # A folder of other classes besides the model's: scored on the model's, the rest unscored.
    mixed = {"m": (40, 30, [("cat", 1, 1, 30, 25, 0), ("kite", 5, 5, 20, 20, 0)])}
    voc = make_voc_tree(tmp_path / "mixed", mixed, split="val")
    out = tmp_path / "m.json"
    assert ev.main(["--model", str(cat_dog_onnx), "--data", str(voc), "--json", str(out)]) == 0
    assert set(json.loads(out.read_text())["per_class"]) == {"cat", "dog"}
