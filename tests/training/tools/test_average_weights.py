"""training.tools.average_weights: the mean of weight files, checked against a hand-made mean."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import load_model
from model.fcos import FCOS
from tests.training.synthetic import save_random_weights
from training.tools.average_weights import average_states, main


def _weights(path: Path, seed: int, preset: str = "tiny") -> FCOS:
    return save_random_weights(path, seed, preset, epoch=seed)


def test_average_states_golden() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor([3])}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor([5])}
    out = average_states([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0]))
    assert torch.equal(out["n"], torch.tensor([3]))  # integers: the first file's
    with pytest.raises(ValueError):
        average_states([])
    with pytest.raises(ValueError):
        average_states([a, {"w": torch.zeros(3), "n": torch.tensor([5])}])
    with pytest.raises(ValueError):
        average_states([a, {"v": torch.zeros(2), "n": torch.tensor([5])}])


def test_cli_writes_the_mean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = [_weights(tmp_path / f"w{k}.pt", k) for k in range(3)]
    out = tmp_path / "soup.pt"
    assert main([str(tmp_path / f"w{k}.pt") for k in range(3)] + [str(out)]) == 0
    assert "averaged 3 files" in capsys.readouterr().out
    soup, ckpt = load_model(out)
    assert ckpt["averaged"] == [str(tmp_path / f"w{k}.pt") for k in range(3)]
    for name, value in soup.state_dict().items():
        if value.is_floating_point():
            want = torch.stack([m.state_dict()[name] for m in models]).mean(0).half().float()
            torch.testing.assert_close(value, want, rtol=0, atol=0)


def test_cli_refuses_one_input_or_mixed_models(tmp_path: Path) -> None:
    _weights(tmp_path / "a.pt", 0)
    with pytest.raises(SystemExit):
        main([str(tmp_path / "a.pt"), str(tmp_path / "out.pt")])
    _weights(tmp_path / "b.pt", 1, "r18-gn-lite")
    with pytest.raises(ValueError):
        main([str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), str(tmp_path / "out.pt")])
