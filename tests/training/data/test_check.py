"""The dataset check (training/data/check.py, `python -m training.check`): its figures."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from tests.training.yolo_helpers import roboflow_dataset
from training.check import main
from training.data.check import (
    LEVEL_NAMES,
    P3_STRIDE,
    SMALL_FRACTION,
    SMALL_SIDE,
    check_dataset,
    check_loaded,
    format_check,
    level_counts,
)
from training.data.report import LoadReport
from training.data.sample import Sample
from training.engine.targets import DEFAULT_STRIDES


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


def boxes_of_side(side: float, count: int, width: int, height: int) -> list[Sample]:
    """`count` width x height images (no files: the check reads annotations only), each with one
    square box of `side` px at its centre."""
    x1, y1 = (width - side) / 2, (height - side) / 2
    box = np.asarray([[x1, y1, x1 + side, y1 + side]], dtype=np.float32)
    return [
        Sample(f"i{k}", Path(f"/nonexistent/i{k}.jpg"), width, height, box.copy(),
               np.zeros(1, dtype=np.int64), np.zeros(1, dtype=bool))
        for k in range(count)
    ]  # fmt: skip


def small_warnings(splits: dict[str, list[Sample]], input_size: int = 384) -> list[str]:
    loaded = {name: (samples, LoadReport()) for name, samples in splits.items()}
    check = check_loaded(loaded, ("thing",), input_size)
    return [w for w in check.warnings() if "small" in w]


def test_warns_when_most_boxes_are_small_in_large_photos() -> None:
    """1280 px photos with 20 px boxes at a 384 px input: 6 px boxes, all small; the photos are
    3.3x the input, so native crops are named with the median size."""
    train = boxes_of_side(20, 8, 1280, 1280)
    (text,) = small_warnings({"train": train, "val": boxes_of_side(20, 2, 1280, 1280)})
    assert "train 100% (8 of 8)" in text and "val 100% (2 of 2)" in text
    assert f"< {SMALL_SIDE:.0f} px at the 384 px input" in text
    assert f"warned from {SMALL_FRACTION:.0%}" in text
    assert "--input-size 768" in text
    assert "--crop-scale native" in text and "1280 px, 3.3x the input" in text
    assert "tile=auto" in text and "DETECTOR_TILE" in text and "export.predict --tile" in text
    table = format_check(check_loaded({"train": (train, LoadReport())}, ("thing",), 384))
    assert table.count("warning: most boxes are small") == 1


def test_small_box_threshold_and_no_native_crops_for_input_sized_photos() -> None:
    """500 px photos: 60 small boxes (40 px -> 31 px at 384) of 100 warn (60% >= 50%), without
    naming native crops (the photos are 1.3x the input); 40 of 100 do not warn."""
    small, large = boxes_of_side(40, 60, 500, 400), boxes_of_side(200, 40, 500, 400)
    (text,) = small_warnings({"train": small + large})
    assert "train 60% (60 of 100)" in text and "--crop-scale" not in text
    assert small_warnings({"train": small[:40] + large + boxes_of_side(200, 20, 500, 400)}) == []


def test_silent_for_voc_like_sizes() -> None:
    """VOC-like: 500x375 photos, boxes of 30..300 px (most far above 32 px at 384)."""
    samples = [s for side in (30, 60, 120, 200, 300) for s in boxes_of_side(side, 4, 500, 375)]
    assert small_warnings({"train": samples, "val": samples[:10]}) == []
    assert small_warnings({"train": boxes_of_side(0, 0, 500, 375)}) == []  # no boxes at all


def test_small_side_matches_the_finest_stride() -> None:
    assert DEFAULT_STRIDES[0] == P3_STRIDE
