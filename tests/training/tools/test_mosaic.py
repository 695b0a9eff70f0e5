"""training.tools.mosaic: 2x2 mosaics of a VOC split, boxes scaled and shifted, loadable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.training.data_helpers import make_voc_tree
from training.data.voc import load_voc
from training.tools.mosaic import build_mosaics, main

CELL = 64


def tree(root: Path) -> Path:
    return make_voc_tree(root, {
        "a": (80, 40, [("cat", 11, 21, 40, 30, 0)]),  # scale 0.8, cell (0, 0)
        "b": (40, 80, [("dog", 1, 1, 40, 80, 1)]),  # scale 0.8, cell (64, 0)
        "c": (32, 32, [("person", 1, 1, 16, 16, 0)]),  # scale 2 (enlarged), cell (0, 64)
        "d": (64, 64, []),  # cell (64, 64)
        "e": (64, 32, [("cat", 33, 1, 64, 32, 0)]),  # scale 1, alone in the padded 2nd mosaic
    }, split="val", ext=".jpg")  # fmt: skip


def test_mosaics_scale_and_shift_the_boxes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert build_mosaics(tree(tmp_path / "src"), "val", out, grid=2, cell=CELL) == 2
    assert (out / "ImageSets/Main/val.txt").read_text().split() == ["mosaic_00000",
                                                                   "mosaic_00001"]
    with Image.open(out / "JPEGImages/mosaic_00000.jpg") as img:
        assert img.size == (128, 128)
    samples = load_voc(out, "val", ("cat", "dog", "person"))
    assert [s.width for s in samples] == [128, 128]
    # VOC (xmin, ymin, xmax, ymax) 1-based -> the loader's 0-based continuous boxes.
    np.testing.assert_allclose(samples[0].boxes, [
        [8, 16, 32, 24],  # (10, 20, 40, 30) x 0.8
        [64, 0, 96, 64],  # (0, 0, 40, 80) x 0.8 + (64, 0)
        [0, 64, 32, 96],  # (0, 0, 16, 16) x 2 + (0, 64)
    ], atol=0.01)  # fmt: skip
    assert samples[0].labels.tolist() == [0, 1, 2]
    assert samples[0].difficult.tolist() == [False, True, False]
    np.testing.assert_allclose(samples[1].boxes, [[32, 0, 64, 32]], atol=0.01)  # x 1, (0, 0)


def test_deterministic_and_cli(tmp_path: Path) -> None:
    src = tree(tmp_path / "src")
    assert main(["--voc-root", str(src), "--split", "val", "--output", str(tmp_path / "one"),
                 "--cell", str(CELL)]) == 0  # fmt: skip
    build_mosaics(src, "val", tmp_path / "two", grid=2, cell=CELL)
    for name in ("JPEGImages/mosaic_00001.jpg", "Annotations/mosaic_00000.xml"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert main(["--voc-root", str(src), "--split", "nope", "--output", str(tmp_path / "x")]) == 2


def test_proxy_splits_share_one_folder(tmp_path: Path) -> None:
    src = tree(tmp_path / "src")  # the five photos as val
    (src / "ImageSets/Main/train.txt").write_text("a\nb\nc\nd\n")  # the first four as train
    out = tmp_path / "proxy"
    from training.tools.mosaic import build_proxy

    assert build_proxy(src, out, grid=2, cell=CELL, val_photos=4) == {
        "train": 1, "val": 1, "test": 1}  # fmt: skip
    for split in ("train", "val", "test"):
        assert (out / f"ImageSets/Main/{split}.txt").read_text().split() == [
            f"{split}_mosaic_00000"]  # fmt: skip
    # No split overwrote another's files: train's mosaic holds a-d, test's e alone.
    assert len(load_voc(out, "train", ("cat", "dog", "person"))[0].boxes) == 3
    np.testing.assert_allclose(load_voc(out, "test", ("cat",))[0].boxes, [[32, 0, 64, 32]],
                               atol=0.01)  # fmt: skip
    assert main(["--voc-root", str(src), "--output", str(tmp_path / "cli"), "--proxy",
                 "--cell", str(CELL)]) == 0  # fmt: skip
