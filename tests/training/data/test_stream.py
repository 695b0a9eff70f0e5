"""EpochBatches / EpochStream: one iterator across epochs, batches equal to per-epoch ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from tests.training.synthetic import make_voc, tiny_args
from training import trainer as trainer_module
from training.cli import main
from training.data.stream import EpochBatches, EpochStream, Key


class KeyEcho(Dataset):
    """Returns its key: what each batch carried, without images."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: Key) -> Key:
        return key


def as_list(batch: list[Key]) -> list[Key]:
    return list(batch)


def reference(n: int, batch: int, epoch: int, on: bool, rank: int = 0, ranks: int = 1) -> list:
    """A per-epoch DataLoader's batches, written out: that epoch's order, cut into batches."""
    sampler = DistributedSampler(range(n), num_replicas=ranks, rank=rank, shuffle=True, seed=7)
    sampler.set_epoch(epoch)
    keys = [(int(i), epoch, on, on) for i in sampler]
    batches = [keys[s : s + batch] for s in range(0, len(keys), batch)]
    if len(keys) > batch and len(batches[-1]) < batch:
        batches.pop()  # drop_last when an epoch holds more than one batch
    return batches


def _batches(n: int, batch: int, augment_on, rank: int = 0, ranks: int = 1) -> EpochBatches:
    inner = DistributedSampler(KeyEcho(n), num_replicas=ranks, rank=rank, shuffle=True, seed=7)
    return EpochBatches(inner, batch, augment_on)


@pytest.mark.parametrize(("n", "batch", "ranks"), [(10, 4, 1), (3, 4, 1), (11, 2, 2), (8, 4, 1)])
def test_epoch_batches_match_per_epoch_batches(n: int, batch: int, ranks: int) -> None:
    for rank in range(ranks):
        sampler = _batches(n, batch, lambda e: e <= 3, rank, ranks)
        it = iter(sampler)
        for epoch in range(1, 6):
            want = reference(n, batch, epoch, epoch <= 3, rank, ranks)
            assert len(sampler) == len(want)
            assert [next(it) for _ in range(len(sampler))] == want, (epoch, rank)
        assert sampler.made == {e: e <= 3 for e in range(1, 6)}


def test_epoch_batches_start_at_first_epoch() -> None:
    sampler = _batches(6, 2, lambda e: True)
    sampler.first_epoch = 4
    it = iter(sampler)
    assert [next(it) for _ in range(len(sampler))] == reference(6, 2, 4, True)


def test_stream_keeps_one_iterator_and_prefetches_across_epochs() -> None:
    n, batch = 6, 2
    sampler = _batches(n, batch, lambda e: e <= 2)
    loader = DataLoader(KeyEcho(n), batch_sampler=sampler, num_workers=2, collate_fn=as_list,
                        persistent_workers=True, prefetch_factor=2)  # fmt: skip
    stream = EpochStream(loader, sampler)
    got = [list(stream.epoch(epoch)) for epoch in range(1, 5)]
    assert got == [reference(n, batch, e, e <= 2) for e in range(1, 5)]
    assert stream.restarts == 1
    # 2 workers x prefetch 2 = 4 batches in flight: keys of later epochs are already made.
    assert max(sampler.made) > 4


def test_stream_restarts_when_a_prefetched_switch_went_stale() -> None:
    """As after --time-budget-min: the plan shrinks, so prefetched epochs must lose Mosaic."""
    n, batch = 4, 2
    plan = {"epochs": 50}
    sampler = _batches(n, batch, lambda e: e <= plan["epochs"] - 2)
    loader = DataLoader(KeyEcho(n), batch_sampler=sampler, num_workers=2, collate_fn=as_list,
                        persistent_workers=True, prefetch_factor=4)  # fmt: skip
    stream = EpochStream(loader, sampler)
    first = [list(stream.epoch(e)) for e in (1, 2)]
    assert sampler.made[3] is True  # made ahead, under the old plan
    plan["epochs"] = 4
    later = [list(stream.epoch(e)) for e in (3, 4)]
    assert first + later == [reference(n, batch, e, e <= 2) for e in range(1, 5)]
    assert stream.restarts == 2


def test_stream_restarts_on_a_jump() -> None:
    sampler = _batches(4, 2, lambda e: True)
    stream = EpochStream(DataLoader(KeyEcho(4), batch_sampler=sampler, collate_fn=as_list),
                         sampler)  # fmt: skip
    assert list(stream.epoch(1)) == reference(4, 2, 1, True)
    assert list(stream.epoch(7)) == reference(4, 2, 7, True)
    assert stream.restarts == 2


def test_workers_and_a_shrunk_plan_train_the_same_weights(
    tmp_path: Path, single_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 prefetching workers + a plan cut from 50 to 4 epochs == 4 epochs in-process.

    The workers make epochs 3-4 ahead with Mosaic/MixUp on (50-epoch plan); the plan then turns
    them off (last 2 of 4), so only a restarted stream gives the same weights.
    """
    make_voc(tmp_path / "data" / "VOC", num_images=4, seed=4)
    common = ("--no-aug-epochs", "2", "--mosaic-prob", "1", "--mixup-prob", "0.5",
              "--warmup-epochs", "2", "--warmup-iters", "0", "--seed", "1")  # fmt: skip
    monkeypatch.setattr(trainer_module, "plan_epochs", lambda **_: 4)
    planned, straight = tmp_path / "planned", tmp_path / "straight"
    assert main(tiny_args(tmp_path / "data", planned, *common, "--workers", "2",
                          "--epochs", "50", "--time-budget-min", "60")) == 0  # fmt: skip
    assert main(tiny_args(tmp_path / "data", straight, *common, "--epochs", "4")) == 0
    a = torch.load(planned / "final.pt", weights_only=False)
    b = torch.load(straight / "final.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 4
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_checkpoint_interval_writes_last_pt_every_n_epochs(
    tmp_path: Path, single_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_voc(tmp_path / "data" / "VOC", num_images=4, seed=2)
    saved: list[tuple[str, int]] = []
    real_save = trainer_module.atomic_save

    def record(obj: dict, path: Path) -> None:
        saved.append((Path(path).name, int(obj["epoch"])))
        real_save(obj, path)

    monkeypatch.setattr(trainer_module, "atomic_save", record)
    run = tmp_path / "run"
    assert main(tiny_args(tmp_path / "data", run, "--epochs", "5",
                          "--checkpoint-interval", "2")) == 0  # fmt: skip
    assert saved == [("last.pt", 2), ("last.pt", 4), ("last.pt", 5)]
    saved.clear()
    assert main(tiny_args(tmp_path / "data", tmp_path / "cut", "--epochs", "5",
                          "--checkpoint-interval", "4", "--stop-epoch", "3")) == 0  # fmt: skip
    assert saved == [("last.pt", 3)]
