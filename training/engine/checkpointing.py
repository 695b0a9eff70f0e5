"""Training checkpoints (format: model/checkpoint.py) plus what an exact resume needs.

Written each epoch: `last.pt`; `best.pt` when val mAP@0.5 improves; `final.pt` at the end.
Besides the shared keys ("format", "config", "model", "ema", "optimizer", "scheduler",
"epoch", "train_config", "metrics") a training checkpoint holds "best_map50",
"ema_state" (updates counter) and "rng": one entry per rank with the python, numpy, torch
and CUDA generator states, so `--resume` continues exactly where the run stopped.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.checkpoint import FORMAT, load_checkpoint_dict, weights_of
from model.fcos import FCOS
from training.engine.ema import ModelEMA
from training.engine.schedule import WarmupCosine
from training.engine.transfer import transfer_state


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves a torn checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, str(tmp))
    os.replace(tmp, path)


def build_checkpoint(
    *, model: torch.nn.Module, ema: ModelEMA | None, optimizer: torch.optim.Optimizer,
    scheduler: WarmupCosine, epoch: int, best_map50: float, metrics: dict[str, Any],
    model_config: dict[str, Any], train_config: dict[str, Any], rng: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    return {
        "format": FORMAT,
        "config": model_config,
        "train_config": train_config,
        "model": model.state_dict(),
        "ema": ema.module.state_dict() if ema is not None else None,
        "ema_state": {"updates": ema.updates} if ema is not None else None,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "best_map50": best_map50,
        "metrics": metrics,
        "rng": rng,
    }


def restore_training_state(
    ckpt: dict[str, Any], *, model: torch.nn.Module, ema: ModelEMA | None,
    optimizer: torch.optim.Optimizer, scheduler: WarmupCosine, rank: int = 0,
) -> tuple[int, float]:  # fmt: skip
    """Load weights, optimizer, schedule and this rank's RNG state; returns (epoch, best)."""
    model.load_state_dict(ckpt["model"])
    if ema is not None:
        if ckpt.get("ema") is not None:
            ema.load_state_dict({"module": ckpt["ema"], "updates": ckpt["ema_state"]["updates"]})
        else:  # EMA switched on at resume: start it from the current weights
            ema.module.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    rngs = ckpt.get("rng") or []
    if rngs:
        set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0])
    return int(ckpt["epoch"]), float(ckpt.get("best_map50", -1.0))


def load_init_weights(model: FCOS, path: str | Path) -> str:
    """Start `model` from the (EMA) weights of a checkpoint or weights-only file.

    Unlike --resume nothing else is restored: optimiser, schedule and epoch count start afresh
    (a warm restart, fine-tuning, or a longer schedule continued from an earlier run). With the
    same classes every tensor is loaded (a strict load); with another class list the model is
    transferred (training/engine/transfer.py: tensors matching in name and shape are copied,
    class-logit rows are matched by name). Returns what was done, for the log.
    """
    ckpt = load_checkpoint_dict(path)
    want = tuple(model.cfg.class_names)
    have = tuple(ckpt["config"].get("class_names") or ())
    state, use_ema = weights_of(ckpt)
    head = f"initialised from {path} ({'EMA' if use_ema else 'model'} weights, " \
           f"epoch {ckpt.get('epoch', '?')})"  # fmt: skip
    if not have or have == want:
        model.load_state_dict(state)  # copy_ casts the fp16 storage
        return head
    report = transfer_state(model, state, have, want)
    return f"{head}: its {len(have)} classes -> this run's {len(want)}\n{report.summary()}"


def load_for_resume(path: str | Path) -> dict[str, Any]:
    ckpt = load_checkpoint_dict(path)
    for key in ("optimizer", "scheduler", "epoch", "train_config"):
        if key not in ckpt:
            raise ValueError(f"{path}: not a training checkpoint (no {key!r}); cannot resume")
    return ckpt
