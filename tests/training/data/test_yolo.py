"""The YOLO reader (training/data/yolo.py) and the format recognition (training/data/source.py)
on hand-made datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.training.yolo_helpers import roboflow_dataset
from training.data.errors import DatasetError
from training.data.report import LoadReport
from training.data.source import data_format, has_split, load_data
from training.data.yolo import label_path, load_yolo, read_data_yaml


def by_id(samples: list) -> dict:
    return {Path(s.image_id).name: s for s in samples}


def test_roboflow_paths_names_list_and_pixel_boxes(tmp_path: Path) -> None:
    yaml_path = roboflow_dataset(tmp_path / "rf")
    report = LoadReport()
    samples, names = load_yolo(yaml_path, "train", report=report)
    assert names == ("cat", "dog")
    s = by_id(samples)
    assert sorted(s) == ["a", "b", "c", "d", "e"]
    # cx cy w h = 0.5 0.5 0.5 0.5 on a 200x100 image -> xyxy (50, 25, 150, 75)
    np.testing.assert_allclose(s["a"].boxes, [[50, 25, 150, 75]], atol=1e-4)
    assert s["a"].labels.tolist() == [0] and (s["a"].width, s["a"].height) == (200, 100)
    np.testing.assert_allclose(s["b"].boxes, [[15, 15, 35, 35], [65, 55, 85, 95]], atol=1e-4)
    assert s["b"].labels.tolist() == [1, 0]


def test_background_images_and_dropped_boxes_are_counted_never_fatal(tmp_path: Path) -> None:
    report = LoadReport()
    samples, _ = load_yolo(roboflow_dataset(tmp_path / "rf"), "train", report=report)
    s = by_id(samples)
    assert s["c"].num_objects == 0 and s["d"].num_objects == 0  # empty file / no file
    assert s["e"].labels.tolist() == [1]  # the good dog survives its bad neighbours
    assert report.empty_images == 2 and report.images == 5 and report.objects == 4
    assert report.skipped_objects == 4  # degenerate, outside, class 7, malformed
    kinds = " ".join(report.problems)
    for what in ("degenerate", "outside", "class id 7", "not numbers"):
        assert what in kinds
    dropped, _ = load_yolo(roboflow_dataset(tmp_path / "rf2"), "train", drop_empty=True)
    assert sorted(by_id(dropped)) == ["a", "b", "e"]


def test_names_as_a_dict_and_valid_read_as_val(tmp_path: Path) -> None:
    yaml_path = roboflow_dataset(tmp_path / "rf", names_yaml="{0: cat, 1: dog}")
    samples, names = load_yolo(yaml_path, "valid")
    assert names == ("cat", "dog") and len(samples) == 1
    assert load_yolo(yaml_path, "val")[0][0].image_path == samples[0].image_path


def test_ultralytics_layout_with_path_list_files_and_polygons(tmp_path: Path) -> None:
    root = tmp_path / "datasets" / "mine"
    imgs, lbls = root / "images" / "train", root / "labels" / "train"
    imgs.mkdir(parents=True)
    lbls.mkdir(parents=True)
    Image.new("RGB", (100, 50), (90, 120, 30)).save(imgs / "p.jpg")
    (lbls / "p.txt").write_text("2 0.1 0.2 0.5 0.2 0.3 0.8\n")  # polygon of class 2
    (root / "val.txt").write_text("./images/train/p.jpg\n")
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "data.yaml").write_text(
        "path: ../datasets/mine\ntrain: images/train\nval: val.txt\n"
        "names:\n  0: a\n  1: b\n  2: c\n"
    )
    spec = read_data_yaml(cfg / "data.yaml")
    assert spec.root == root.resolve() and set(spec.splits) == {"train", "val"}
    for split in ("train", "val"):
        samples, names = load_yolo(cfg / "data.yaml", split)
        assert names == ("a", "b", "c") and len(samples) == 1
        np.testing.assert_allclose(samples[0].boxes, [[10, 10, 50, 40]], atol=1e-4)
        assert samples[0].labels.tolist() == [2]


def test_a_class_subset_remaps_ids_and_drops_the_rest(tmp_path: Path) -> None:
    report = LoadReport()
    samples, names = load_yolo(roboflow_dataset(tmp_path / "rf"), "test", ["dog"], report=report)
    assert names == ("dog",) and samples[0].labels.tolist() == [0]
    assert report.dropped_by_class == {"cat": 1}
    with pytest.raises(DatasetError, match="horse"):
        load_yolo(roboflow_dataset(tmp_path / "rf2"), "test", ["horse"])


@pytest.mark.parametrize(("body", "match"), [
    ("train: a\nnames: [x, y]\nnc: 3\n", "nc=3"),
    ("train: a\n", "names"),
    ("names: {0: x, 2: y}\n", "ids"),
    ("names: [x, x]\n", "duplicate"),
])  # fmt: skip
def test_malformed_yaml_is_a_clear_error(tmp_path: Path, body: str, match: str) -> None:
    (tmp_path / "data.yaml").write_text(body)
    with pytest.raises(DatasetError, match=match):
        read_data_yaml(tmp_path / "data.yaml")


def test_a_missing_split_is_a_clear_error(tmp_path: Path) -> None:
    yaml_path = roboflow_dataset(tmp_path / "rf")
    (yaml_path).write_text("train: ../train/images\nnames: [cat, dog]\n")
    with pytest.raises(DatasetError, match="no 'test' split"):
        load_yolo(yaml_path, "test")


def test_label_path_replaces_the_last_images_component() -> None:
    assert label_path(Path("/d/images/train/images/x.jpg")) == Path("/d/images/train/labels/x.txt")
    assert label_path(Path("/d/pics/x.png")) == Path("/d/pics/x.txt")


def test_the_format_is_recognised_from_what_is_passed(tmp_path: Path) -> None:
    yaml_path = roboflow_dataset(tmp_path / "rf")
    assert data_format(yaml_path) == "yolo" and data_format(tmp_path / "rf") == "yolo"
    assert has_split(yaml_path, "test") and has_split(yaml_path, "valid")
    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    assert data_format(voc) == "voc"
    coco = tmp_path / "coco" / "train" / "_annotations.coco.json"
    coco.parent.mkdir(parents=True)
    coco.write_text('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]}')
    assert data_format(tmp_path / "coco") == "coco-dir" and data_format(coco) == "coco"
    assert has_split(tmp_path / "coco", "train") and not has_split(tmp_path / "coco", "val")
    assert load_data(coco, "train") == ([], ("x",))
    with pytest.raises(DatasetError, match="not a recognised dataset"):
        data_format(tmp_path / "rf" / "train")
    with pytest.raises(DatasetError, match="no such"):
        data_format(tmp_path / "nothing")
