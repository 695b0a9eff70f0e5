"""Split a checkpoint's (EMA) weights into fp16 shards under a size cap, and join them back.

A lent GPU machine returns at most 8 files of 16 MiB each; r18-gn-lite's fp16 weights are
25 MB. `split` writes export-ready shards (config, train_config, epoch and metrics in each);
`join` rebuilds the single weights-only file that `python -m export --checkpoint` and
`--init-weights` read (model.checkpoint.save_weights_only's format).

  python -m training.tools.shards split runs/gpu/best.pt out/ --prefix best
  python -m training.tools.shards join out/best-*.pt models/default.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import FORMAT, fp16_state, load_checkpoint_dict, weights_of

MAX_SHARD_BYTES = 15 * 2**20  # under the 16 MiB cap, with room for the pickle's overhead
EXTRA_KEYS = ("epoch", "metrics", "train_config")


def partition(sizes: list[int], max_bytes: int) -> list[list[int]]:
    """Consecutive groups of indices whose sizes sum to <= max_bytes (one oversized item alone)."""
    groups: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i, size in enumerate(sizes):
        if current and total + size > max_bytes:
            groups.append(current)
            current, total = [], 0
        current.append(i)
        total += size
    if current:
        groups.append(current)
    return groups


def split(src: str | Path, out_dir: str | Path, prefix: str = "weights",
          max_bytes: int = MAX_SHARD_BYTES) -> list[Path]:  # fmt: skip
    """Writes `<out_dir>/<prefix>-<i>-of-<n>.pt`; floating tensors stored as fp16."""
    ckpt = load_checkpoint_dict(src)
    state, _ = weights_of(ckpt)
    half = fp16_state(state)
    keys = list(half)
    groups = partition([half[k].numel() * half[k].element_size() for k in keys], max_bytes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = {k: ckpt[k] for k in EXTRA_KEYS if k in ckpt}
    paths = []
    for i, group in enumerate(groups):
        path = out / f"{prefix}-{i + 1}-of-{len(groups)}.pt"
        part = {keys[j]: half[keys[j]] for j in group}
        torch.save({"format": FORMAT, "config": ckpt["config"], "model": part,
                    "shard": i + 1, "shards": len(groups), **extra}, str(path))  # fmt: skip
        paths.append(path)
    return paths


def join(parts: list[str | Path], dst: str | Path) -> dict[str, Any]:
    """Merges shards (any order) into one weights-only file; checks that all are there."""
    loaded = [torch.load(str(p), map_location="cpu", weights_only=False) for p in parts]
    if not loaded:
        raise ValueError("no shards given")
    n = int(loaded[0]["shards"])
    numbers = sorted(int(d["shard"]) for d in loaded)
    if numbers != list(range(1, n + 1)):
        raise ValueError(f"shards {numbers} given, expected 1..{n}")
    if any(d["config"] != loaded[0]["config"] for d in loaded):
        raise ValueError("shards come from different models")
    state: dict[str, torch.Tensor] = {}
    for d in sorted(loaded, key=lambda d: int(d["shard"])):
        state.update(d["model"])
    first = loaded[0]
    merged = {"format": FORMAT, "config": first["config"], "model": state,
              **{k: first[k] for k in EXTRA_KEYS if k in first}}  # fmt: skip
    torch.save(merged, str(dst))
    return merged


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.tools.shards", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split", help="checkpoint -> fp16 shards")
    s.add_argument("src")
    s.add_argument("out_dir")
    s.add_argument("--prefix", default="weights")
    s.add_argument("--max-mib", type=float, default=MAX_SHARD_BYTES / 2**20)
    j = sub.add_parser("join", help="shards -> one weights-only file")
    j.add_argument("parts", nargs="+")
    j.add_argument("dst")
    a = p.parse_args(argv)
    if a.cmd == "split":
        for path in split(a.src, a.out_dir, a.prefix, int(a.max_mib * 2**20)):
            print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB)")
    else:
        merged = join(a.parts, a.dst)
        print(f"{len(a.parts)} shards -> {a.dst} ({len(merged['model'])} tensors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
