"""Average the weights of several checkpoints of one architecture (a uniform "model soup").

Each input is read like `--init-weights` reads it (EMA weights preferred); floating tensors
are averaged in float32, integer ones (none in FCOS today) taken from the first file, and the
result is written in `model.checkpoint.save_weights_only`'s export-ready format (fp16).

  python -m training.tools.average_weights runs/a/best.pt runs/b/best.pt models/default.pt
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from model.checkpoint import load_model, save_weights_only


def average_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating tensors over `states` (same keys and shapes), float32."""
    if not states:
        raise ValueError("nothing to average")
    keys = list(states[0])
    for s in states[1:]:
        if list(s) != keys:
            raise ValueError("the checkpoints have different parameters")
    out: dict[str, torch.Tensor] = {}
    for k in keys:
        first = states[0][k]
        if not first.is_floating_point():
            out[k] = first.clone()
            continue
        shapes = {tuple(s[k].shape) for s in states}
        if len(shapes) != 1:
            raise ValueError(f"{k}: shapes differ {sorted(shapes)}")
        out[k] = torch.stack([s[k].float() for s in states]).mean(0)
    return out


def average_files(paths: Sequence[str | Path], dst: str | Path) -> None:
    models = [load_model(p)[0] for p in paths]
    configs = {str(m.cfg.to_dict()) for m in models}
    if len(configs) != 1:
        raise ValueError("the checkpoints are of different model configs")
    model = models[0]
    model.load_state_dict(average_states([m.state_dict() for m in models]))
    save_weights_only(model, dst, epoch=0, metrics=None, averaged=[str(p) for p in paths])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.tools.average_weights",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="two or more checkpoints or weights files")
    p.add_argument("output", help="the averaged weights file to write")
    args = p.parse_args(argv)
    if len(args.inputs) < 2:
        p.error("give at least two inputs")
    average_files(args.inputs, args.output)
    print(f"averaged {len(args.inputs)} files -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
