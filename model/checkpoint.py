"""Checkpoint format shared by training (writer) and export/evaluation (readers).

A checkpoint is a dict saved with torch.save:
  {"format": "fcos-checkpoint/1", "config": ModelConfig.to_dict(), "model": state_dict,
   "ema": state_dict | None, "optimizer": ..., "scheduler": ..., "epoch": int,
   "train_config": dict, "metrics": dict, ...}
`config["class_names"]` holds the class names. Exporters and evaluation use "ema" when present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from model.config import ModelConfig
from model.fcos import FCOS

FORMAT = "fcos-checkpoint/1"


def load_checkpoint_dict(path: str | Path) -> dict[str, Any]:
    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path}: not an FCOS checkpoint (needs 'config' and 'model' keys)")
    return ckpt


def weights_of(ckpt: dict[str, Any], use_ema: bool = True) -> tuple[dict[str, Any], bool]:
    """The checkpoint's EMA state dict when asked for and present, else its model's; and
    whether it was the EMA."""
    ema = use_ema and ckpt.get("ema") is not None
    return (ckpt["ema"] if ema else ckpt["model"]), ema


def load_model(path: str | Path, use_ema: bool = True) -> tuple[FCOS, dict[str, Any]]:
    """Build the model from a checkpoint's config and load its (EMA) weights, float32, eval."""
    ckpt = load_checkpoint_dict(path)
    cfg = ModelConfig.from_dict(ckpt["config"])
    model = FCOS(cfg)
    state, _ = weights_of(ckpt, use_ema)
    model.load_state_dict(state)  # copy_ casts fp16 storage to the float32 model
    return model.eval(), ckpt


def fp16_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CPU copy of a state dict with floating tensors stored as fp16."""
    return {k: (v.half() if v.is_floating_point() else v).detach().cpu().clone()
            for k, v in state.items()}  # fmt: skip


def save_weights_only(model: FCOS, path: str | Path, half: bool = True, **extra: Any) -> None:
    """A small export-ready checkpoint (config + weights, fp16 storage by default)."""
    state = (
        fp16_state(model.state_dict())
        if half
        else {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    )
    torch.save(
        {"format": FORMAT, "config": model.cfg.to_dict(), "model": state, **extra}, str(path)
    )
