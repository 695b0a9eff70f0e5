"""FCOS in pure PyTorch (no torchvision)."""

from model.config import PRESETS, ModelConfig, get_preset
from model.fcos import FCOS, OUTPUT_NAMES, build_model, count_parameters

__all__ = ["FCOS", "OUTPUT_NAMES", "PRESETS", "ModelConfig", "build_model", "count_parameters",
           "get_preset"]
