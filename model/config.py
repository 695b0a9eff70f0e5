"""Model configuration: presets are data, not code copies."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

# ImageNet statistics on 0..1 RGB; kept so torchvision-format backbone weights fit as they are.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


# The head tower that predicts centre-ness (FCOSHead): the regression tower (the default) or,
# as in the first FCOS paper, the classification tower.
CENTERNESS_BRANCHES: tuple[str, ...] = ("reg", "cls")


def dataclass_to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as a JSON-friendly dict (tuples become lists)."""
    d = dataclasses.asdict(obj)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def dataclass_from_dict(cls: type[T], d: dict[str, Any]) -> T:
    """Inverse of dataclass_to_dict; unknown keys are an error, lists become tuples."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build an FCOS model; stored in checkpoints and ONNX metadata."""

    name: str = "r18-gn"
    class_names: tuple[str, ...] = VOC_CLASSES
    backbone_channels: tuple[int, int, int, int] = (64, 128, 256, 512)
    fpn_channels: int = 256
    head_convs: int = 4
    gn_groups: int = 32
    input_size: int = 512
    strides: tuple[int, ...] = (8, 16, 32, 64, 128)
    prior_prob: float = 0.01
    centerness_branch: str = "reg"  # the tower centre-ness is predicted from: reg or cls
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def replace(self, **changes: object) -> ModelConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return dataclass_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> ModelConfig:
        return dataclass_from_dict(cls, d)


PRESETS: dict[str, ModelConfig] = {
    # The seed spec: 256-channel FPN and head, 4 convs per tower, 512 input.
    "r18-gn": ModelConfig(name="r18-gn"),
    # Lighter head: 128 channels, 2 convs per tower (a fraction of the head FLOPs), 384 input:
    # the size every shipped config trains at and the bundled model serves at.
    "r18-gn-lite": ModelConfig(
        name="r18-gn-lite", fpn_channels=128, head_convs=2, input_size=384
    ),
    # Tiny: for tests and CPU overfit runs only.
    "tiny": ModelConfig(
        name="tiny", backbone_channels=(16, 32, 64, 64), fpn_channels=32, head_convs=1,
        gn_groups=8, input_size=128,
    ),
}


def get_preset(name: str, **overrides: object) -> ModelConfig:
    """Return preset `name` with `overrides` applied (e.g. class_names=(...))."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    cfg = PRESETS[name]
    if "class_names" in overrides:
        overrides["class_names"] = tuple(overrides["class_names"])  # type: ignore[arg-type]
    return cfg.replace(**overrides) if overrides else cfg
