"""python -m training.tools.loader_speed: the trainer's loader timed across epoch boundaries, with
the HSV jitter in the loader or left to the device."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.synthetic import make_voc, tiny_args
from training.cli import resolve_config
from training.tools.loader_speed import batches, main, measure


@pytest.mark.parametrize(("place", "on_device"), [("loader", False), ("device", True)])
def test_measures_the_trainers_loader(
    tmp_path: Path, single_thread: None, place: str, on_device: bool
) -> None:
    make_voc(tmp_path / "data" / "VOC", num_images=4, seed=3)
    cfg = resolve_config(tiny_args(tmp_path / "data", tmp_path / "run", "--hsv-on", place))
    img_s, hsv_device = measure(cfg, num_batches=5, warmup=1)  # 2 batches an epoch: 3 epochs
    assert img_s > 0 and hsv_device is on_device


def test_batches_run_on_into_the_next_epochs(tmp_path: Path, single_thread: None) -> None:
    from training.data.loaders import build_data
    from training.engine.distributed import DistInfo

    make_voc(tmp_path / "data" / "VOC", num_images=5, seed=3)
    cfg = resolve_config(tiny_args(tmp_path / "data", tmp_path / "run"))
    data = build_data(cfg, DistInfo(), lambda epoch: True)
    stream = batches(data)
    sizes = [int(next(stream)[0].shape[0]) for _ in range(6)]
    assert sizes == [2] * 6  # 5 images, batch 2, drop_last: two batches an epoch
    assert data.stream.batches.made.keys() >= {1, 2, 3}
    assert data.stream.restarts == 1  # one loader iterator across the epochs


def test_cli_prints_the_rate(tmp_path: Path, single_thread: None, capsys) -> None:
    make_voc(tmp_path / "data" / "VOC", num_images=2, seed=3)
    args = tiny_args(tmp_path / "data", tmp_path / "run", "--hsv-on", "device")
    assert main([*args, "--batches", "2", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "img/s" in out and "HSV drawn only" in out
