"""The dataset check (training/data/check.py, `python -m training.check`): its figures."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from tests.training.yolo_helpers import roboflow_dataset
from training.check import main
from training.data.check import LEVEL_NAMES, check_dataset, format_check, level_counts


def test_the_figures_of_a_hand_made_dataset(tmp_path: Path) -> None:
    data = roboflow_dataset(tmp_path / "rf")
    # the test image duplicated into train: a leak the check must name
    shutil.copyfile(tmp_path / "rf/test/images/t.jpg", tmp_path / "rf/train/images/t2.jpg")
    (tmp_path / "rf/train/images/bad.jpg").write_bytes(b"not a jpeg")
    check = check_dataset(data, input_size=200)
    train, val, test = check.splits
    assert [s.name for s in check.splits] == ["train", "val", "test"]
    assert (train.images, train.background) == (6, 3)  # c, d, t2 (no labels) / bad skipped
    assert train.per_class == [2, 2] and val.per_class == [1, 0] and test.per_class == [1, 1]
    assert train.dropped == {"outside": 1, "degenerate": 1, "class": 1, "malformed": 1}
    assert len(train.unreadable) == 1 and "bad.jpg" in train.unreadable[0]
    # a: a 100x50 box on 200x100 -> longer side 100 px at 200 input; b (100x100): 20x20 and
    # 20x40 boxes -> 40 and 80 px; e: 30x30 -> 60 px. All on P3 (half side <= 64).
    np.testing.assert_allclose(sorted(train.sizes), [40, 60, 80, 100], atol=1e-3)
    assert train.levels == [4, 0, 0, 0, 0]
    assert len(check.duplicates) == 1 and {p.split(":")[0] for p in check.duplicates[0]} == {
        "train", "test"}  # fmt: skip
    table = format_check(check)
    assert "  cat " in table and "dropped: outside" in table and "unreadable images" in table
    assert "across splits" in table and "val: no objects of dog" in table


def test_level_counts_follow_the_fcos_ranges() -> None:
    sizes = np.array([10.0, 128.0, 129.0, 256.0, 300.0, 1024.0, 2000.0])
    assert level_counts(sizes) == [2, 2, 1, 1, 1]
    assert len(LEVEL_NAMES) == 5


def test_cli_prints_the_table_and_writes_the_png(tmp_path: Path, capsys) -> None:
    data = roboflow_dataset(tmp_path / "rf")
    png = tmp_path / "out" / "check.png"
    assert main(["--data", str(data), "--output", str(png), "--input-size", "128"]) == 0
    out = capsys.readouterr().out
    assert "dataset check" in out and "P3" in out
    with Image.open(png) as img:
        assert img.format == "PNG" and img.width > 600
    assert main(["--data", str(tmp_path / "missing")]) == 2
