"""Start a model from weights trained on another class list (fine-tuning, transfer learning).

Every tensor whose name and shape match is copied (backbone, FPN, both towers, the box and
centre-ness branches, the per-level scales). The class logits are the exception: their rows
are matched by class *name*, so a class the two lists share keeps its trained row (wherever it
sits in either list) and a new class starts afresh (the model's own initialisation: weights
N(0, 0.01), bias at the prior probability). Anything else that differs in shape stays as
initialised. The report says which tensors were copied and which re-initialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

# The class-logit tensors of FCOSHead: one row per class.
CLASS_ROWS = ("head.cls_logits.weight", "head.cls_logits.bias")


@dataclass
class TransferReport:
    copied: list[str] = field(default_factory=list)  # tensors loaded as they are
    reinitialised: list[str] = field(default_factory=list)  # kept at the model's init
    unused: list[str] = field(default_factory=list)  # source tensors the model lacks
    shared_classes: list[str] = field(default_factory=list)  # logit rows kept (by name)
    new_classes: list[str] = field(default_factory=list)  # logit rows started afresh
    numel_copied: int = 0
    numel_total: int = 0

    def summary(self) -> str:
        share = self.numel_copied / self.numel_total if self.numel_total else 0.0
        lines = [
            f"  copied {len(self.copied)} tensors ({share:.1%} of the parameters): "
            + _groups(self.copied),
            f"  re-initialised {len(self.reinitialised)}: "
            + (", ".join(self.reinitialised) or "none"),
            f"  class rows kept (same name): {', '.join(self.shared_classes) or 'none'}; "
            f"started afresh: {', '.join(self.new_classes) or 'none'}",
        ]
        if self.unused:
            lines.append(f"  not used from the file: {', '.join(self.unused)}")
        return "\n".join(lines)


def _groups(names: Sequence[str]) -> str:
    """'backbone (62), fpn (8), head (30)': counts by the first two name components."""
    counts: dict[str, int] = {}
    for n in names:
        parts = n.split(".")
        key = ".".join(parts[:2]) if parts[0] == "head" else parts[0]
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} ({v})" for k, v in counts.items()) or "none"


@torch.no_grad()
def transfer_state(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    source_classes: Sequence[str],
    target_classes: Sequence[str],
) -> TransferReport:
    """Copy `state` (from a model over `source_classes`) into `model` (over `target_classes`)."""
    report = TransferReport()
    target = model.state_dict()
    rows = [(j, source_classes.index(name), name) for j, name in enumerate(target_classes)
            if name in source_classes]  # fmt: skip
    logits = [state.get(n) for n in CLASS_ROWS]
    if not all(v is not None and v.shape[1:] == target[n].shape[1:]
               for n, v in zip(CLASS_ROWS, logits, strict=True)):  # fmt: skip
        rows = []  # another head width: no row can be kept
    report.shared_classes = [name for _, _, name in rows]
    report.new_classes = [n for n in target_classes if n not in report.shared_classes]
    for name, tensor in target.items():
        numel = tensor.numel() if tensor.is_floating_point() else 0
        report.numel_total += numel
        src = state.get(name)
        if name in CLASS_ROWS:
            for j, i, _ in rows:
                tensor[j].copy_(src[i])  # type: ignore[index]
            if report.new_classes:
                report.reinitialised.append(f"{name} (rows of {len(report.new_classes)} "
                                            f"new classes)")  # fmt: skip
            else:
                report.copied.append(name)
            report.numel_copied += numel * len(rows) // max(1, len(target_classes))
        elif src is not None and src.shape == tensor.shape:
            tensor.copy_(src)  # copy_ casts fp16 storage to the model's dtype
            report.copied.append(name)
            report.numel_copied += numel
        else:
            why = "not in the file" if src is None else f"shape {tuple(src.shape)} in the file"
            report.reinitialised.append(f"{name} ({why})")
    report.unused = sorted(set(state) - set(target))
    return report


# Backbone parts frozen by --freeze-at N (detectron2's FREEZE_AT): 1 = the stem, 2 = the stem
# and the first stage, ... 5 = the whole ResNet.
FREEZE_PARTS: tuple[tuple[str, ...], ...] = (
    ("conv1.", "bn1."), ("layer1.",), ("layer2.",), ("layer3.",), ("layer4.",),
)  # fmt: skip


def freeze_backbone(model: torch.nn.Module, freeze_at: int) -> int:
    """Stop training the first `freeze_at` backbone parts (FREEZE_PARTS); returns how many
    parameters were frozen. No gradient then flows through them at all (their input, the
    image, needs none): the backward pass is cheaper, and the general low-level features of
    the trained model stay as they are."""
    prefixes = tuple(p for part in FREEZE_PARTS[: max(0, freeze_at)] for p in part)
    frozen = 0
    for name, param in model.backbone.named_parameters():  # type: ignore[union-attr]
        if prefixes and name.startswith(prefixes):
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen
