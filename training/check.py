"""`python -m training.check --data path/data.yaml`: a dataset's check, as a table and a PNG.

    python -m training.check --data my/data.yaml --output data_check.png
    python -m training.check --data VOCdevkit/VOC2012 --classes cat,dog --input-size 384

The same check opens every `python -m training --data ...` run (its PNG: <run>/plots/data.png).
What is counted: training/data/check.py.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from training.data.check import LEVEL_EDGES, LEVEL_NAMES, DataCheck, check_dataset, format_check
from training.data.errors import DatasetError

WARNING_WIDTH = 190  # characters of 8 pt text across the 13 in wide figure


def plot_check(check: DataCheck, path: str | Path) -> Path:
    """Objects per class and split, and the box-size histogram against the levels."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_cls, ax_size) = plt.subplots(1, 2, figsize=(13, 4.8))
    names = check.class_names
    x = np.arange(len(names))
    width = 0.8 / max(1, len(check.splits))
    for k, s in enumerate(check.splits):
        bars = ax_cls.bar(
            x + k * width,
            s.per_class,
            width,
            label=f"{s.name} ({s.images} images, {s.background} background)",
        )
        ax_cls.bar_label(bars, fontsize=7)
    ax_cls.set_xticks(
        x + width * (len(check.splits) - 1) / 2,
        names,
        rotation=30 if len(names) > 6 else 0,
        ha="right" if len(names) > 6 else "center",
    )
    ax_cls.set_ylabel("objects")
    ax_cls.set_title("objects per class")
    ax_cls.legend(fontsize=8)
    sizes = [s.sizes for s in check.splits if s.sizes.size]
    top = max([float(v.max()) for v in sizes] + [float(check.input_size)])
    bins = np.geomspace(1.0, max(2.0, top * 1.05), 40)
    for s in check.splits:
        if s.sizes.size:
            ax_size.hist(s.sizes, bins=bins, histtype="step", linewidth=1.5, label=s.name)
    edges = [2 * e for e in LEVEL_EDGES if 2 * e <= top * 1.05]
    for e in edges:
        ax_size.axvline(e, color="grey", linestyle="--", linewidth=1)
    lows = [1.0, *edges]
    highs = [*edges, top * 1.05]
    for name, lo, hi in zip(LEVEL_NAMES, lows, highs, strict=False):
        ax_size.text(
            np.sqrt(lo * hi),
            1.0,
            name,
            transform=ax_size.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=9,
            color="grey",
        )
    ax_size.set_xscale("log")
    ax_size.set_xlabel(f"box longer side at {check.input_size} px input (px)")
    ax_size.set_ylabel("objects")
    ax_size.set_title("box sizes against the pyramid levels")
    ax_size.legend(fontsize=8)
    # The first 4 warnings, wrapped to the figure's width (WARNING_WIDTH characters).
    lines = [line for w in check.warnings()[:4] for line in textwrap.wrap(w, WARNING_WIDTH)]
    if lines:
        fig.text(0.01, 0.01, "\n".join(lines), fontsize=8, color="darkred", va="bottom")
        fig.subplots_adjust(bottom=0.1 + 0.03 * len(lines))
    fig.tight_layout(rect=(0, 0.04 * len(lines), 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m training.check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="a YOLO data.yaml, a COCO .json, a Roboflow "
                   "COCO export folder or a VOC folder")  # fmt: skip
    p.add_argument("--classes", default=None, help="comma-separated class names to keep "
                   "(default: the dataset's own list)")  # fmt: skip
    p.add_argument("--input-size", type=int, default=384,
                   help="the model's input size, for the box sizes (default: 384, the bundled "
                   "model's)")  # fmt: skip
    p.add_argument("--output", default="data_check.png", help="the PNG to write")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    try:
        check = check_dataset(args.data, args.input_size, classes=classes)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_check(check))
    print(f"figure: {plot_check(check, args.output)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
