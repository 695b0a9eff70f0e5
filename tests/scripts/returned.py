"""What the GPU scripts return through $OUT, read back like a session reads it after a call."""

from __future__ import annotations

from pathlib import Path

from model.checkpoint import load_model
from model.fcos import FCOS
from training.tools.shards import join


def load_returned(out: Path, name: str, work: Path) -> FCOS:
    """Join $OUT's `name-i-of-n.pt` shards into `work` and load them: the tiny two-class model
    at 64 px that the script tests train."""
    shards = sorted(out.glob(f"{name}-*-of-*.pt"))
    assert shards, f"no {name} shards in {out}"
    join(list(shards), work / f"{name}.pt")
    model, _ = load_model(work / f"{name}.pt")
    assert model.cfg.class_names == ("red", "green") and model.cfg.input_size == 64
    return model
