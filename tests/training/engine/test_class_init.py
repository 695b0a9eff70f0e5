"""--init-classes similar (training/engine/class_init.py): new classes' logit rows from the
source class that lights up on their objects."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from model.checkpoint import save_weights_only
from model.config import get_preset
from model.fcos import FCOS
from tests.training.synthetic import make_voc, save_random_weights, tiny_args
from training.cli import main, resolve_config
from training.config import TrainConfig
from training.data import Sample, load_voc
from training.engine import class_init
from training.engine.class_init import (
    RowChoice,
    init_similar_rows,
    probe_class_affinity,
    probe_images,
    summary,
)
from training.engine.runlog import read_log
from training.engine.transfer import transfer_state
from training.recipe import FINETUNE, load_recipe
from training.trainer import Trainer

SOURCE = ("s0", "s1", "s2", "blue")
TARGET = ("red", "green", "blue")  # red, green new; blue matched by name
SIZE = 128  # make_voc's image size: the letterbox leaves pixels as they are


class RiggedSource(FCOS):
    """A source model whose class logits read the image: -4.6 (p 0.01) everywhere, but s2 at
    +3 on locations whose pixel is red and s0 at -3.5 (p 0.029) on green ones."""

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cls, box, ctr = super().forward(images)  # cls (B, P, K)
        height, width = images.shape[2:]
        pixels = []
        for s in self.cfg.strides:  # each location's own pixel, in model output order
            ys = (torch.arange(math.ceil(height / s)) * s + s // 2).clamp(max=height - 1)
            xs = (torch.arange(math.ceil(width / s)) * s + s // 2).clamp(max=width - 1)
            pixels.append(images[:, :, ys][:, :, :, xs].flatten(2).transpose(1, 2))  # (B, hw, 3)
        rgb = torch.cat(pixels, dim=1)  # (B, P, 3) normalised
        red = rgb[..., 0] - rgb[..., 1] > 2.0  # (B, P); noise stays below 1.4
        green = rgb[..., 1] - rgb[..., 0] > 2.0
        logits = torch.full_like(cls, -4.6)
        logits[..., 2] = torch.where(red, 3.0, -4.6)
        logits[..., 0] = torch.where(green, -3.5, -4.6)
        return logits, box, ctr


def _samples(tmp_path: Path) -> list[Sample]:
    make_voc(tmp_path / "VOC", num_images=8, size=SIZE, classes=TARGET, seed=5)
    return load_voc(tmp_path / "VOC", "train", TARGET)


def _rigged() -> RiggedSource:
    torch.manual_seed(1)
    return RiggedSource(get_preset("tiny", class_names=SOURCE, input_size=SIZE))


def test_new_classes_take_the_row_of_the_source_class_their_boxes_light_up(
    tmp_path: Path,
) -> None:
    samples = _samples(tmp_path)
    source = _rigged()
    torch.manual_seed(0)
    model = FCOS(get_preset("tiny", class_names=TARGET, input_size=SIZE))
    transfer_state(model, source.state_dict(), SOURCE, TARGET)  # blue's row by name
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    affinity = probe_class_affinity(source, samples, TARGET, SIZE, center_radius=1.5)
    red, green, blue = 0, 1, 2
    assert int(affinity.positives[red]) > 0 and int(affinity.positives[green]) > 0
    # Every positive location of a red box is red: the mean is exactly sigmoid(3).
    assert float(affinity.mean_prob[red, 2]) == pytest.approx(1 / (1 + math.exp(-3.0)), abs=1e-5)
    assert float(affinity.mean_prob[green, 0]) == pytest.approx(1 / (1 + math.exp(3.5)), abs=1e-5)
    choices = init_similar_rows(model, source.state_dict(), affinity, ["red", "green"])
    got, src = model.state_dict(), source.state_dict()
    for key in ("head.cls_logits.weight", "head.cls_logits.bias"):
        assert torch.equal(got[key][red], src[key][2])  # red <- s2
        assert torch.equal(got[key][green], fresh[key][green])  # 0.029 < 0.05: fresh
        assert torch.equal(got[key][blue], src[key][3])  # matched by name: untouched
    assert [c.source for c in choices] == ["s2", None]
    assert choices[1].best == "s0"
    text = summary(choices, affinity, 0.05)
    assert f"red <- s2 (mean p 0.95 over {int(affinity.positives[red])} positive locations)" in text
    assert "green: fresh (best s0 0.03)" in text and "probe: 8 images" in text


def test_the_report_text() -> None:
    assert RowChoice("vehicle", "car", "car", 0.412, 812).describe() == (
        "vehicle <- car (mean p 0.41 over 812 positive locations)"
    )
    assert RowChoice("widget", None, "bottle", 0.02, 40).describe() == (
        "widget: fresh (best bottle 0.02)"
    )
    assert RowChoice("kite", None, "cat", 0.0, 0).describe() == (
        "kite: fresh (no positive locations in the probed images)"
    )


def test_probe_images_is_a_fixed_round_robin_over_the_new_classes(tmp_path: Path) -> None:
    samples = _samples(tmp_path)
    picked = probe_images(samples, [0], 3, seed=0)
    assert len(picked) == 3 and all((s.labels == 0).any() for s in picked)
    assert [s.image_id for s in picked] == [s.image_id for s in probe_images(samples, [0], 3)]
    every = probe_images(samples, [0, 1], 100)
    assert {s.image_id for s in every} == {
        s.image_id for s in samples if ((s.labels == 0) | (s.labels == 1)).any()
    }
    assert probe_images(samples, [0], 0) == []


def test_the_default_is_by_name_and_the_recipe_says_similar(tmp_path: Path) -> None:
    assert TrainConfig().init_classes == "name"
    assert load_recipe(FINETUNE)["init_classes"] == "similar"
    old = TrainConfig().to_dict()
    del old["init_classes"], old["init_classes_images"]  # a config written before the field
    assert TrainConfig.from_dict(old).init_classes == "name"
    with pytest.raises(ValueError, match="init_classes"):
        TrainConfig(init_classes="nearest").validate()
    src = tmp_path / "src.pt"
    save_random_weights(src, seed=3, classes=SOURCE)
    make_voc(tmp_path / "data" / "VOC", num_images=2, seed=2)
    cfg = resolve_config(["--data-root", str(tmp_path / "data"), "--init-weights", str(src)])
    assert cfg.init_classes == "similar"


def _run(tmp_path: Path, *extra: str) -> list[str]:
    return tiny_args(tmp_path / "data", tmp_path / "run", "--recipe", "none",
                     "--init-weights", str(tmp_path / "w.pt"), *extra)  # fmt: skip


def test_the_trainer_probes_once_and_not_on_resume(
    tmp_path: Path, single_thread: None, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    make_voc(tmp_path / "data" / "VOC", num_images=4, seed=2)
    source = save_random_weights(tmp_path / "w.pt", seed=7, classes=("green", "blue"))
    with torch.no_grad():  # blue's row answers p 0.5 everywhere: red <- blue
        source.head.cls_logits.weight[1] = 0.0
        source.head.cls_logits.bias[1] = 0.0
    save_weights_only(source, tmp_path / "w.pt", half=False)
    trainer = Trainer(resolve_config(_run(tmp_path, "--init-classes", "similar")))
    out = capsys.readouterr().out
    assert "red <- blue (mean p 0.50 over" in out and "probe: 4 images" in out
    got = trainer.model.state_dict()
    for key in ("head.cls_logits.weight", "head.cls_logits.bias"):
        assert torch.equal(got[key][0], source.state_dict()[key][1])  # red <- blue
        assert torch.equal(got[key][1], source.state_dict()[key][0])  # green: by name
    assert trainer.setup_s > 0
    (record,) = [r for r in read_log(tmp_path / "run") if r["type"] == "class_init"]
    assert record["time_s"] == trainer.setup_s and "red <- blue" in record["summary"]
    assert main(_run(tmp_path, "--init-classes", "similar", "--epochs", "2",
                     "--stop-epoch", "1")) == 0  # fmt: skip

    def no_probe(*args: object, **kwargs: object) -> None:
        raise AssertionError("the class probe ran on resume")

    monkeypatch.setattr(class_init, "similar_class_init", no_probe)
    assert main(["--resume", str(tmp_path / "run" / "last.pt"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["init_classes"] == (
        "similar"
    )


def test_same_classes_or_by_name_do_not_probe(
    tmp_path: Path, single_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_voc(tmp_path / "data" / "VOC", num_images=2, seed=2)
    source = save_random_weights(tmp_path / "w.pt", seed=7, classes=("red", "green"))
    model = FCOS(get_preset("tiny", class_names=("red", "green")))
    assert class_init.similar_class_init(model, str(tmp_path / "w.pt"), []) is None
    called: list[int] = []
    monkeypatch.setattr(class_init, "probe_class_affinity", lambda *a, **k: called.append(1))
    trainer = Trainer(resolve_config(_run(tmp_path, "--init-classes", "similar")))
    assert not called and trainer.setup_s == 0.0
    assert torch.equal(trainer.model.head.cls_logits.weight, source.head.cls_logits.weight)
    save_random_weights(tmp_path / "w.pt", seed=7, classes=("green", "blue"))
    Trainer(resolve_config(_run(tmp_path)))  # --init-classes name: the default
    assert not called
