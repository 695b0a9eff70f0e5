"""`python -m training` end to end on a tiny synthetic VOC tree: outputs, log, plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_model
from tests.training.synthetic import add_val_split, make_voc, tiny_args
from training import plots
from training.cli import build_parser, main
from training.config import RUN_OUTPUTS


def test_cli_smoke_writes_checkpoints_log_and_plots(tmp_path: Path, single_thread: None) -> None:
    add_val_split(make_voc(tmp_path / "data" / "VOC", num_images=5, seed=2))
    run = tmp_path / "run"
    args = tiny_args(tmp_path / "data", run, "--epochs", "2", "--ema-decay", "0.99",
                     "--no-aug-epochs", "1", "--eval-interval", "1")  # fmt: skip
    assert main(args) == 0

    # The run directory holds exactly what docs/TRAINING.md lists (RUN_OUTPUTS).
    written = {p.name + "/" * p.is_dir() for p in run.iterdir()}
    assert written == set(RUN_OUTPUTS), written
    assert (run / "plots" / "data.png").is_file()  # a --data run checks its dataset
    saved = json.loads((run / "train_config.json").read_text())
    assert saved["preset"] == "tiny" and saved["classes"] == ["red", "green"]

    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    iters = [r for r in records if r["type"] == "iter"]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert len(iters) == 4  # 5 images, batch 2, last partial batch dropped: 2 steps x 2
    for r in iters + epochs:
        assert {"total", "cls", "box", "ctr", "lr", "img_s"} <= r.keys()
        assert r["img_s"] > 0
    assert all(0.0 <= r["val"]["map50"] <= 1.0 for r in epochs)
    assert epochs[-1]["best_map50"] == max(r["val"]["map50"] for r in epochs)

    for name in ("losses.png", "lr.png", "map.png"):
        path = run / "plots" / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        path.unlink()
    assert plots.main([str(run)]) == 0
    assert (run / "plots" / "map.png").is_file()

    final = torch.load(run / "final.pt", weights_only=False)
    assert final["format"] == "fcos-checkpoint/1" and final["epoch"] == 2
    assert final["config"]["class_names"] == ["red", "green"]
    assert final["train_config"]["epochs"] == 2 and final["ema"] is not None
    model, ckpt = load_model(run / "weights_fp16.pt")
    assert model.cfg.class_names == ("red", "green") and model.cfg.input_size == 128
    assert all(v.dtype == torch.float16 for k, v in ckpt["model"].items() if "weight" in k)
    for k, v in model.state_dict().items():  # the fp16 file holds the EMA weights
        torch.testing.assert_close(v, final["ema"][k].half().float())


def test_cli_help_and_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--backbone-weights" in out and "--no-aug-epochs" in out and "--resume" in out
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--epochs", "many"])
