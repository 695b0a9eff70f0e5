"""training.tools.proxy_dataset: VOC -> a merged-class YOLO dataset that loads back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.config import VOC_CLASSES
from tests.training.data_helpers import make_voc_tree
from training.data.sample import Sample, make_arrays
from training.data.yolo import load_yolo
from training.tools.proxy_dataset import NAMES, build, eligible, main, negative, yolo_lines

TRAIN = {
    "t_car": (100, 80, [("car", 11, 21, 50, 60, 0), ("person", 1, 1, 100, 80, 1)]),
    "t_bird": (100, 80, [("bird", 11, 21, 50, 60, 0), ("dog", 5, 5, 20, 20, 0)]),  # left out
    "t_empty": (100, 80, []),  # left out: no objects
    "t_sofa": (120, 90, [("sofa", 21, 31, 120, 90, 0)]),
}
VAL = {f"v{k}": (64, 48, [(name, 2, 3, 40, 30, 0)]) for k, name in enumerate(
    ["cow", "bus", "chair", "person", "horse"])}  # fmt: skip


def voc(tmp_path: Path) -> Path:
    root = make_voc_tree(tmp_path / "voc", TRAIN, split="train")
    return make_voc_tree(root, VAL, split="val")


def sample(name: str, box: tuple[float, float, float, float], w: int, h: int) -> Sample:
    boxes, labels, difficult = make_arrays([box], [VOC_CLASSES.index(name)], [False])
    return Sample("x", Path("x.jpg"), w, h, boxes, labels, difficult)


def test_yolo_lines_golden_and_eligibility() -> None:
    # (10, 20, 50, 60) in a 100 x 200 image: centre (30, 40), size 40 x 40.
    assert yolo_lines(sample("cow", (10, 20, 50, 60), 100, 200)) == [
        "1 0.300000 0.200000 0.400000 0.200000"
    ]
    assert yolo_lines(sample("diningtable", (0, 0, 100, 200), 100, 200)) == [
        "3 0.500000 0.500000 1.000000 1.000000"
    ]
    kept = [sample("person", (0, 0, 5, 5), 10, 10)]
    dropped = [sample("bird", (0, 0, 5, 5), 10, 10)]
    empty = [Sample("e", Path("e.jpg"), 10, 10, *make_arrays([], [], []))]
    assert eligible(kept + dropped + empty) == kept


def test_build_photo_loads_back_with_merged_classes(tmp_path: Path) -> None:
    root = voc(tmp_path)
    out = tmp_path / "proxy"
    summary = build(root, out, sizes=(10, 2, 2))
    assert {k: n for k, (n, _) in summary.items()} == {"train": 2, "valid": 2, "test": 2}
    assert summary["train"][1] == {"vehicle": 1, "person": 1, "furniture": 1}

    train, names = load_yolo(out / "data.yaml", "train")
    assert names == NAMES
    by_id = {Path(s.image_path).stem: s for s in train}
    assert set(by_id) == {"t_car", "t_sofa"}
    car = by_id["t_car"]
    # VOC 1-based inclusive (11, 21, 50, 60) -> continuous (10, 20, 50, 60); difficult kept.
    np.testing.assert_allclose(car.boxes, [[10, 20, 50, 60], [0, 0, 100, 80]], atol=1e-3)
    assert [NAMES[k] for k in car.labels] == ["vehicle", "person"]
    np.testing.assert_allclose(by_id["t_sofa"].boxes, [[20, 30, 120, 90]], atol=1e-3)

    valid, _ = load_yolo(out / "data.yaml", "valid")
    test, _ = load_yolo(out / "data.yaml", "test")
    ids = [Path(s.image_path).stem for s in valid + test]
    assert len(set(ids)) == 4 and set(ids) <= set(VAL)  # disjoint, from VOC val
    with Image.open(Path(car.image_path)) as a, Image.open(root / "JPEGImages/t_car.png") as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # photos copied as they are


def test_negative_render_is_inverted_grey_and_deterministic(tmp_path: Path) -> None:
    flat = Image.new("RGB", (64, 48), (200, 100, 50))
    grey = np.asarray(flat.convert("L"), dtype=np.float32).mean()
    a = np.asarray(negative(flat, "img1"))
    assert a.shape == (48, 64, 3)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    assert abs(a[8:-8, 8:-8, 0].mean() - (255 - grey)) < 1.0  # noise has mean 0
    assert 0 < a[..., 0].std() < 6.0  # the noise, softened by the blur
    np.testing.assert_array_equal(a, np.asarray(negative(flat, "img1")))
    assert not np.array_equal(a, np.asarray(negative(flat, "img2")))  # seeded by the id

    root = voc(tmp_path)
    main(["--voc-root", str(root), "--output", str(tmp_path / "n1"), "--render", "negative",
          "--sizes", "4", "1", "1"])  # fmt: skip
    build(root, tmp_path / "n2", sizes=(4, 1, 1), render="negative")
    files = sorted(p.relative_to(tmp_path / "n1") for p in (tmp_path / "n1").rglob("*.*"))
    assert any(p.suffix == ".jpg" for p in files)
    for rel in files:
        if rel.name != "data.yaml":
            assert (tmp_path / "n1" / rel).read_bytes() == (tmp_path / "n2" / rel).read_bytes()


def test_unknown_render_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="render"):
        build(tmp_path, tmp_path / "out", render="sepia")
