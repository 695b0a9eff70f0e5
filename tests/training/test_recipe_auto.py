"""--recipe auto on a dataset (training/recipe_auto.py): the choices from synthetic statistics,
hand-computed; the fields flags set are kept; a real small dataset through resolve_config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import training.recipe_auto as auto
from tests.training.yolo_helpers import write_split
from training.recipe_auto import DataStats, choose, epochs_at


def stats(small: float, image_side: float = 1280.0, images: int = 400, n: int = 1000,
          small_side: float = 20.0, large_side: float = 150.0) -> DataStats:  # fmt: skip
    """`n` boxes at a 384 px input, a share `small` of them `small_side` px, the rest
    `large_side`; every photo `image_side` px."""
    k = round(small * n)
    sides = np.array([small_side] * k + [large_side] * (n - k), dtype=np.float64)  # (n,)
    return DataStats(images, sides, np.full(images, image_side), 384)


def test_small_share_scales_with_the_input() -> None:
    s = stats(0.2, small_side=20.0)  # 20 px at 384: 26.7 px at 512, 33.3 at 640
    assert s.small_share(384) == pytest.approx(0.2)
    assert s.small_share(512) == pytest.approx(0.2)
    assert s.small_share(640) == 0.0
    assert DataStats(3, np.zeros(0), np.zeros(0), 384).small_share(384) == 0.0


def test_epochs_at_is_the_budget_over_the_epoch_time() -> None:
    # 1200 s, 0.8 of it for epochs, 6 img/s * 0.8 at 384 -> (384/512)^2 at 512; 300 images.
    assert epochs_at(384, 384, 300, 1200.0, 6.0) == pytest.approx(0.8 * 1200 * 4.8 / 300)
    assert epochs_at(512, 384, 300, 1200.0, 6.0) == pytest.approx(0.8 * 1200 * 2.7 / 300)


def test_photos_like_voc_keep_the_recipe() -> None:
    c = choose(stats(0.06, image_side=640), 384, 1200.0, None)
    assert c.fields == {}
    assert "6%" in c.reasons[0] and not auto.needs_speed(stats(0.06, image_side=640), 384)


def test_small_objects_get_the_smallest_size_that_resolves_them() -> None:
    # 20% at 22 px: still 29 px (small) at 512, 37 px at 640.
    s = stats(0.2, small_side=22.0)
    c = choose(s, 384, 0.0, None)  # no budget: the size alone decides
    assert c.fields == {"input_size": 640}
    # 27 px at 384 is 36 px at 512: 512 is enough.
    assert choose(stats(0.2, small_side=27.0), 384).fields == {"input_size": 512}


def test_the_budget_caps_the_size() -> None:
    s = stats(0.2, small_side=22.0, images=368)
    # 12 img/s: 640 fits 0.8*1200*12*0.8*0.36/368 = 9.0 epochs >= 6.
    assert choose(s, 384, 1200.0, 12.0).fields["input_size"] == 640
    # 5.9 img/s: 512 fits 7.0, 640 4.4 -> 512; small boxes remain there: no Mosaic, milder jitter.
    c = choose(s, 384, 1200.0, 5.9)
    assert c.fields == {"input_size": 512, "mosaic_prob": 0.0, "scale_min": auto.SMALL_SCALE_MIN}
    assert "~7 epochs" in c.reasons[0]
    # 3 img/s: 512 fits 3.6 epochs: the model's size, native crops (1280 > 3 x 384).
    c = choose(s, 384, 1200.0, 3.0)
    assert "input_size" not in c.fields and c.fields["crop_scale"] == "native"
    assert "budget fits < 6 epochs at 512" in c.reasons[0]
    assert "tile" in c.reasons[1]


def test_never_above_the_photos() -> None:
    s = stats(0.5, image_side=500.0, small_side=10.0)
    assert "input_size" not in choose(s, 384).fields  # 512 > 500: nothing to gain
    s = stats(0.5, image_side=600.0, small_side=10.0)
    assert choose(s, 384).fields["input_size"] == 512  # 640 > 600


def test_native_crops_only_for_photos_far_larger_than_the_input() -> None:
    assert choose(stats(0.0, image_side=1280), 384).fields == {"crop_scale": "native"}
    assert choose(stats(0.0, image_side=1100), 384).fields == {}  # 2.9x


def test_auto_fields_reads_a_dataset_and_keeps_what_flags_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 8 photos of 1280 px with four 24 px boxes each (7 px at 384: all small).
    lines = [f"0 {x} {y} 0.01875 0.01875" for x in (0.25, 0.75) for y in (0.25, 0.75)]
    write_split(tmp_path / "train", [(f"i{k}", (1280, 1280), lines) for k in range(8)])
    (tmp_path / "data.yaml").write_text("train: train/images\nval: train/images\nnames: [fish]\n")
    monkeypatch.setattr(auto, "measure_speed", lambda *a, **k: 50.0)
    data = str(tmp_path / "data.yaml")
    fields = auto.auto_fields({"data": data, "time_budget_min": 20.0}, {"input_size": 384})
    assert fields["input_size"] == 640 and fields["mosaic_prob"] == 0.0
    assert fields["budget_spent_s"] > 0  # the probe's time counts in the budget
    assert "recipe auto: input_size 640" in capsys.readouterr().out
    kept = auto.auto_fields({"data": data, "input_size": 384, "mosaic_prob": 0.5}, {})
    assert "input_size" not in kept and "mosaic_prob" not in kept
    assert kept["crop_scale"] == "native"  # 1280 px photos at the 384 px input the flag set
    assert kept["scale_min"] == auto.SMALL_SCALE_MIN
    said = capsys.readouterr().out
    assert "input_size 384: set; 100%" in said
    assert "(mosaic_prob: set by a flag or --config, kept)" in said
    assert auto.auto_fields({"data": str(tmp_path / "none")}, {}) == {}


def test_resolve_config_takes_the_data_choices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.recipe
    from training.cli import resolve_config

    lines = [f"0 {x} 0.5 0.01875 0.01875" for x in (0.25, 0.75)]
    write_split(tmp_path / "train", [(f"i{k}", (1280, 1280), lines) for k in range(4)])
    (tmp_path / "data.yaml").write_text("train: train/images\nval: train/images\nnames: [fish]\n")
    monkeypatch.setattr(training.recipe, "init_architecture", lambda path: {"input_size": 384})
    base = ["--data", str(tmp_path / "data.yaml"), "--init-weights", "w.pt"]
    cfg = resolve_config(base)  # no budget: no speed probe
    assert (cfg.input_size, cfg.mosaic_prob, cfg.budget_spent_s) == (640, 0.0, 0.0)
    assert resolve_config([*base, "--recipe", "finetune"]).input_size == 384
    assert resolve_config([*base, "--input-size", "512"]).input_size == 512
