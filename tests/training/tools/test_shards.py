"""training.tools.shards: fp16 shards under a size cap, joined back into a loadable weights file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import load_model
from model.fcos import FCOS
from tests.training.synthetic import save_random_weights
from training.tools.shards import join, main, partition, split


def test_partition_keeps_order_and_cap() -> None:
    assert partition([], 10) == []
    assert partition([4, 4, 4, 4], 8) == [[0, 1], [2, 3]]
    assert partition([3, 9, 2, 2], 8) == [[0], [1], [2, 3]]  # an oversized item goes alone
    sizes = [5, 1, 7, 3, 3, 2, 8, 1]
    groups = partition(sizes, 8)
    assert [i for g in groups for i in g] == list(range(len(sizes)))
    assert all(sum(sizes[i] for i in g) <= 8 or len(g) == 1 for g in groups)


def _checkpoint(path: Path) -> FCOS:
    return save_random_weights(path, 0, epoch=3, metrics={"val": {"map50": 0.5}})


def test_split_and_join_round_trip(tmp_path: Path) -> None:
    model = _checkpoint(tmp_path / "w.pt")
    parts = split(tmp_path / "w.pt", tmp_path / "out", prefix="best", max_bytes=100_000)
    assert len(parts) > 2 and all(p.stat().st_size < 100_000 + 20_000 for p in parts)
    assert parts[0].name == f"best-1-of-{len(parts)}.pt"
    merged = join(list(reversed(parts)), tmp_path / "joined.pt")  # any order
    assert merged["epoch"] == 3 and merged["metrics"] == {"val": {"map50": 0.5}}
    loaded, _ = load_model(tmp_path / "joined.pt")
    for name, value in model.state_dict().items():
        want = value.half().float() if value.is_floating_point() else value
        assert torch.equal(loaded.state_dict()[name], want), name


def test_join_refuses_missing_or_foreign_shards(tmp_path: Path) -> None:
    _checkpoint(tmp_path / "w.pt")
    parts = split(tmp_path / "w.pt", tmp_path / "out", max_bytes=100_000)
    with pytest.raises(ValueError, match="expected 1"):
        join(parts[:-1], tmp_path / "j.pt")
    with pytest.raises(ValueError, match="no shards"):
        join([], tmp_path / "j.pt")
    foreign = torch.load(parts[1], weights_only=False)
    foreign["config"] = {**foreign["config"], "class_names": ["a", "b"]}
    torch.save(foreign, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="different models"):
        join([parts[0], tmp_path / "foreign.pt", *parts[2:]], tmp_path / "j.pt")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _checkpoint(tmp_path / "w.pt")
    assert main(["split", str(tmp_path / "w.pt"), str(tmp_path / "s"), "--max-mib", "0.1"]) == 0
    parts = sorted(str(p) for p in (tmp_path / "s").glob("weights-*.pt"))
    assert main(["join", *parts, str(tmp_path / "j.pt")]) == 0
    assert "shards ->" in capsys.readouterr().out
    load_model(tmp_path / "j.pt")
