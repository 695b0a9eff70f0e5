"""FCOS in pure PyTorch (no torchvision).

`model.config` is importable without torch; the torch modules load on first attribute access.
"""

from __future__ import annotations

from typing import Any

from model.config import PRESETS, ModelConfig, get_preset

_LAZY = {"FCOS", "count_parameters"}

__all__ = ["FCOS", "PRESETS", "ModelConfig", "count_parameters", "get_preset"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from model import fcos

        return getattr(fcos, name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
