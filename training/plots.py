"""PNG plots of a run from its log.jsonl: `python -m training.plots RUN_DIR`.

Writes `<run>/plots/losses.png` (per-iteration and per-epoch losses), `lr.png` and
`map.png` (validation mAP@0.5 and mAP@0.5:0.95 per epoch).

`python -m training.plots --compare RUN [RUN ...] --output FILE.png [--labels a,b,...]`
overlays the validation mAP@0.5 of several runs (ablations, seeds) in one figure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from training.engine.runlog import read_log

LOSS_KEYS = ("total", "cls", "box", "ctr")  # training.engine.loop.LOSS_KEYS


def _series(records: list[dict[str, Any]], x_key: str, y_key: str) -> tuple[list, list]:
    xs, ys = [], []
    for r in records:
        if r.get(y_key) is not None and r.get(x_key) is not None:
            xs.append(r[x_key])
            ys.append(r[y_key])
    return xs, ys


def _iter_x(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Iteration records with a fractional-epoch x value ("x")."""
    out = []
    for r in records:
        n = r.get("iters_per_epoch") or 0
        x = (r["epoch"] - 1 + r["iter"] / n) if n else r["epoch"]
        out.append({**r, "x": x})
    return out


def make_plots(run_dir: str | Path) -> list[Path]:
    run_dir = Path(run_dir)
    records = read_log(run_dir)
    iters = _iter_x([r for r in records if r.get("type") == "iter"])
    epochs = [r for r in records if r.get("type") == "epoch"]
    out_dir = run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(8, 5))
    for key in LOSS_KEYS:
        xs, ys = _series(iters, "x", key)
        if any(ys):
            ax.plot(xs, ys, alpha=0.35, linewidth=0.8, label=f"{key} (iter)")
        xs, ys = _series(epochs, "epoch", key)
        if any(ys):
            ax.plot(xs, ys, marker="o", label=f"{key} (epoch mean)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("training losses")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    written.append(_save(fig, out_dir / "losses.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
    xs, ys = _series(iters, "x", "lr")
    ax.plot(xs, ys) if xs else ax.plot(*_series(epochs, "epoch", "lr"))
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title("learning rate")
    ax.grid(alpha=0.3)
    written.append(_save(fig, out_dir / "lr.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
    val = _val_records(records)
    for key, label in (("map50", "mAP@0.5"), ("map50_95", "mAP@0.5:0.95")):
        xs, ys = _series(val, "epoch", key)
        if xs:
            ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mAP")
    ax.set_title("validation mAP")
    ax.grid(alpha=0.3)
    if val:
        ax.legend()
    written.append(_save(fig, out_dir / "map.png"))
    return written


def _val_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One {"epoch", **val metrics} record per evaluated epoch of a run's log records."""
    return [{"epoch": r["epoch"], **r["val"]} for r in records
            if r.get("type") == "epoch" and r.get("val")]  # fmt: skip


def compare_runs(
    run_dirs: Sequence[str | Path], output: str | Path, labels: Sequence[str] | None = None
) -> Path:
    """Val mAP@0.5 per epoch of each run, one line per run, written to `output` (PNG)."""
    labels = list(labels) if labels else [Path(r).name for r in run_dirs]
    if len(labels) != len(run_dirs):
        raise ValueError(f"{len(labels)} labels for {len(run_dirs)} runs")
    fig, ax = plt.subplots(figsize=(8, 5))
    for run_dir, label in zip(run_dirs, labels, strict=True):
        xs, ys = _series(_val_records(read_log(Path(run_dir))), "epoch", "map50")
        if not xs:
            plt.close(fig)
            raise ValueError(f"{run_dir}: no validation records in log.jsonl")
        ax.plot(xs, ys, marker="o", markersize=3, label=f"{label} ({ys[-1]:.4f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("val mAP@0.5")
    ax.set_title("validation mAP@0.5 (last value in brackets)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, output)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.plots", description=__doc__)
    parser.add_argument("run_dir", nargs="?", help="a training run directory (holds log.jsonl)")
    parser.add_argument("--compare", nargs="+", metavar="RUN", help="runs to overlay instead")
    parser.add_argument("--output", help="with --compare: the PNG to write")
    parser.add_argument("--labels", help="with --compare: comma-separated legend labels")
    args = parser.parse_args(argv)
    runs = args.compare or ([args.run_dir] if args.run_dir else [])
    if not runs or (args.compare and (args.run_dir or not args.output)):
        parser.error("give one RUN_DIR, or --compare RUN ... --output FILE.png")
    missing = [r for r in runs if not (Path(r) / "log.jsonl").exists()]
    if missing:
        print(f"{', '.join(missing)}: no log.jsonl", file=sys.stderr)
        return 2
    if not args.compare:
        for path in make_plots(args.run_dir):
            print(path)
        return 0
    labels = args.labels.split(",") if args.labels else None
    try:
        print(compare_runs(args.compare, args.output, labels))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
