"""training.tools.shrink_voc: a smaller VOC copy that loads with the same objects, boxes scaled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.training.synthetic import make_voc
from training.data.voc import load_voc
from training.tools.shrink_voc import main, scale_voc_box, scaled_size, shrink_voc


def test_scaled_size_and_box_golden() -> None:
    assert scaled_size(640, 480, 320) == (320, 240)
    assert scaled_size(100, 50, 320) == (100, 50)  # never enlarged
    # VOC 1-based inclusive: the continuous box (0, 9, 64, 32) halves to (0, 4.5, 32, 16).
    assert scale_voc_box((1.0, 10.0, 64.0, 32.0), 0.5, 0.5) == (1.0, 5.5, 32.0, 16.0)


@pytest.mark.parametrize(("fmt", "ext"), [("webp", ".webp"), ("jpeg", ".jpg")])
def test_shrunk_copy_loads_with_scaled_boxes(tmp_path: Path, fmt: str, ext: str) -> None:
    src = make_voc(tmp_path / "src", num_images=4, size=128, seed=1)
    make_voc(tmp_path / "val", num_images=2, size=128, seed=5, split="val")
    n, total = shrink_voc(src, tmp_path / "dst", ["train"], size=64, fmt=fmt, quality=90)
    assert n == 4 and total > 0
    classes = ("red", "green")
    before = load_voc(src, "train", classes)
    after = load_voc(tmp_path / "dst", "train", classes)
    assert [s.image_id for s in after] == [s.image_id for s in before]
    for a, b in zip(after, before, strict=True):
        assert Path(a.image_path).suffix == ext and (a.width, a.height) == (64, 64)
        with Image.open(a.image_path) as img:
            assert img.size == (64, 64)
        np.testing.assert_allclose(a.boxes, b.boxes * 0.5, atol=0.01)  # xyxy, pixels
        np.testing.assert_array_equal(a.labels, b.labels)


def test_cli_and_bad_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_voc(tmp_path / "src", num_images=2, size=96, seed=3)
    assert main(["--src", str(src), "--dst", str(tmp_path / "d"), "--size", "48",
                 "--splits", "train", "--workers", "1"]) == 0  # fmt: skip
    assert "2 images" in capsys.readouterr().out
    with pytest.raises(ValueError, match="format"):
        shrink_voc(src, tmp_path / "e", ["train"], 48, fmt="gif")
