"""What a dataset holds, before a model is trained on it: `python -m training.check` and the
first lines of every `python -m training --data ...` run.

Per split: images, background images (no objects), objects per class, box sizes against the
model's pyramid levels, boxes dropped (outside the image, no area, unknown class, malformed
line) or clipped, unreadable images; across splits: files with identical bytes (duplicates,
which leak between train and test). Box sizes are measured as the model sees them: the image
letterboxed to the input size, a box's size = its longer side; FCOS assigns a box to the level
whose regression range holds half that side (training/engine/targets.py DEFAULT_RANGES).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.data.report import LoadReport
from training.data.sample import Sample

LEVEL_NAMES = ("P3", "P4", "P5", "P6", "P7")
# Half the longer side, in input pixels: the regression ranges of the five levels.
LEVEL_EDGES: tuple[float, ...] = (64.0, 128.0, 256.0, 512.0)
PROBLEM_KINDS = ("outside", "degenerate", "class", "malformed")
P3_STRIDE = 8  # input px between P3 locations: training/engine/targets.py DEFAULT_STRIDES[0]
# A box is small below this longer side (input px): the finest level, P3, sees it on at most
# (32 / 8)^2 = 4x4 locations, of which centre sampling (1.5 strides) keeps fewer still as
# positives. COCO's "small" (area < 32^2 px) draws the same line.
SMALL_SIDE = 32.0
# The share of small boxes in a split from which the check warns: a majority, so that it
# warns when small objects are what a dataset is about (VOC 2012 at a 384 px input: 6%).
SMALL_FRACTION = 0.5
# Native-resolution crops are suggested when the median image's longer side is over this many
# times the input: below it the fit scale shrinks objects by less than half.
LARGE_IMAGE_RATIO = 2.0


def problem_kind(message: str) -> str:
    """Which of PROBLEM_KINDS a loader's skip message is."""
    if "outside the" in message:
        return "outside"
    if "degenerate" in message:
        return "degenerate"
    if "class" in message:
        return "class"
    return "malformed"


@dataclass
class SplitCheck:
    name: str
    images: int
    background: int
    per_class: list[int]  # objects per class id
    sizes: np.ndarray  # (N,) longer box side in letterboxed input pixels
    levels: list[int]  # objects per pyramid level (P3..P7)
    clipped: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # PROBLEM_KINDS -> count
    unreadable: list[str] = field(default_factory=list)
    image_sides: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (M,) longer side px


@dataclass
class DataCheck:
    class_names: tuple[str, ...]
    input_size: int
    splits: list[SplitCheck]
    duplicates: list[list[str]]  # groups of image files with identical bytes

    def warnings(self) -> list[str]:
        out = []
        for s in self.splits:
            dropped = sum(s.dropped.values())
            if dropped:
                out.append(f"{s.name}: {dropped} boxes dropped ({_kinds(s.dropped)})")
            if s.unreadable:
                out.append(f"{s.name}: {len(s.unreadable)} unreadable images, e.g. "
                           f"{s.unreadable[0]}")  # fmt: skip
            empty = [n for n, c in zip(self.class_names, s.per_class, strict=True) if c == 0]
            if empty and s.images:
                out.append(f"{s.name}: no objects of {', '.join(empty)}")
        small = self.small_boxes_warning()
        if small:
            out.append(small)
        cross = [g for g in self.duplicates if len({p.split(":", 1)[0] for p in g}) > 1]
        if self.duplicates:
            out.append(
                f"{len(self.duplicates)} groups of identical image files "
                f"({len(cross)} across splits), e.g. {', '.join(self.duplicates[0])}"
            )
        return out

    def small_boxes_warning(self) -> str | None:
        """When most boxes of a split are small (SMALL_SIDE, SMALL_FRACTION): the shares and
        what to do; None otherwise."""
        flagged = []
        for s in self.splits:
            small = int((s.sizes < SMALL_SIDE).sum())
            if s.sizes.size and small >= SMALL_FRACTION * s.sizes.size:
                share = f"{100.0 * small / s.sizes.size:.0f}%"
                flagged.append(f"{s.name} {share} ({small} of {s.sizes.size})")
        if not flagged:
            return None
        size, cells = self.input_size, f"{SMALL_SIDE / P3_STRIDE:.0f}"
        text = (
            f"most boxes are small: {', '.join(flagged)} have a longer side < {SMALL_SIDE:.0f} "
            f"px at the {size} px input (warned from {SMALL_FRACTION:.0%}), which the "
            f"stride-{P3_STRIDE} P3 level covers with at most {cells}x{cells} locations. Train "
            f"at a larger input (python -m training --input-size {2 * size})"
        )
        sides = np.concatenate([s.image_sides for s in self.splits])  # (M,) px
        median = float(np.median(sides)) if sides.size else 0.0
        if median > LARGE_IMAGE_RATIO * size:
            text += (
                f", crop at native resolution (--crop-scale native: the median image's longer "
                f"side is {median:.0f} px, {median / size:.1f}x the input)"
            )
        return text + (
            ", and tile at serve time (tile=auto on /detect, DETECTOR_TILE=auto, python -m "
            "export.predict --tile auto)"
        )


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v)


def box_sizes(samples: Sequence[Sample], input_size: int) -> np.ndarray:
    """(N,) the longer side of every box once its image is letterboxed to `input_size`."""
    out = [np.zeros(0, dtype=np.float64)]
    for s in samples:
        if s.num_objects:
            scale = input_size / max(s.width, s.height)
            wh = (s.boxes[:, 2:] - s.boxes[:, :2]).astype(np.float64) * scale  # (N, 2)
            out.append(wh.max(axis=1))
    return np.concatenate(out)


def image_sides(samples: Sequence[Sample]) -> np.ndarray:
    """(M,) the longer side of every image in px."""
    return np.asarray([max(s.width, s.height) for s in samples], dtype=np.float64)


def level_counts(sizes: np.ndarray) -> list[int]:
    """Objects per level P3..P7 by half their longer side against LEVEL_EDGES."""
    idx = np.searchsorted(np.asarray(LEVEL_EDGES), sizes / 2.0, side="left")
    return np.bincount(idx, minlength=len(LEVEL_NAMES)).astype(int).tolist()


def file_digest(path: Path) -> str:
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


def check_split(
    name: str, samples: Sequence[Sample], report: LoadReport, num_classes: int, input_size: int
) -> SplitCheck:
    sizes = box_sizes(samples, input_size)
    per_class = np.zeros(num_classes, dtype=int)
    for s in samples:
        np.add.at(per_class, np.asarray(s.labels, dtype=np.int64), 1)
    dropped = dict.fromkeys(PROBLEM_KINDS, 0)
    unreadable = []
    for message in report.problems:
        if "unreadable" in message or "cannot" in message:
            unreadable.append(message)
        else:
            dropped[problem_kind(message)] += 1
    return SplitCheck(
        name, len(samples), sum(1 for s in samples if s.num_objects == 0), per_class.tolist(),
        sizes, level_counts(sizes), report.clipped_boxes, dropped, unreadable,
        image_sides(samples),
    )  # fmt: skip


def find_duplicates(splits: dict[str, Sequence[Sample]]) -> list[list[str]]:
    """Groups ("split:path") of image files whose bytes are identical."""
    seen: dict[str, list[str]] = {}
    for name, samples in splits.items():
        for s in samples:
            try:
                digest = file_digest(s.image_path)
            except OSError:
                continue
            seen.setdefault(digest, []).append(f"{name}:{s.image_path}")
    return [g for g in seen.values() if len(g) > 1]


def check_loaded(
    splits: dict[str, tuple[Sequence[Sample], LoadReport]],
    class_names: Sequence[str],
    input_size: int,
) -> DataCheck:
    """A DataCheck of splits already loaded (name -> (samples, the loader's report))."""
    checks = [check_split(n, s, r, len(class_names), input_size) for n, (s, r) in splits.items()]
    dups = find_duplicates({n: s for n, (s, _) in splits.items()})
    return DataCheck(tuple(class_names), input_size, checks, dups)


def check_dataset(
    path: str | Path, input_size: int, splits: Sequence[str] = ("train", "val", "test"),
    classes: Sequence[str] | None = None,
) -> DataCheck:  # fmt: skip
    """Load every split of the dataset at `path` that exists (skipping problems) and check it."""
    from training.data.source import has_split, load_data

    loaded: dict[str, tuple[Sequence[Sample], LoadReport]] = {}
    names: tuple[str, ...] = tuple(classes or ())
    for split in splits:
        if not has_split(path, split):
            continue
        report = LoadReport()
        samples, names = load_data(path, split, classes, skip_invalid=True, report=report)
        loaded[split] = (samples, report)
    return check_loaded(loaded, names, input_size)


def format_check(check: DataCheck) -> str:
    """The check as a text table (splits as columns)."""
    heads = [s.name for s in check.splits]
    rows: list[tuple[str, list[str]]] = [
        ("images", [str(s.images) for s in check.splits]),
        ("  background (no objects)", [str(s.background) for s in check.splits]),
        ("objects", [str(sum(s.per_class)) for s in check.splits]),
    ]
    for c, name in enumerate(check.class_names):
        rows.append((f"  {name}", [str(s.per_class[c]) for s in check.splits]))
    lo = 0.0
    for k, level in enumerate(LEVEL_NAMES):
        hi = 2 * LEVEL_EDGES[k] if k < len(LEVEL_EDGES) else None
        span = f"{lo:.0f}-{hi:.0f} px" if hi is not None else f">{lo:.0f} px"
        rows.append((f"  {level} ({span})", [str(s.levels[k]) for s in check.splits]))
        lo = hi or lo
    for kind in PROBLEM_KINDS:
        rows.append((f"dropped: {kind}", [str(s.dropped.get(kind, 0)) for s in check.splits]))
    rows.append(("boxes clipped", [str(s.clipped) for s in check.splits]))
    rows.append(("unreadable images", [str(len(s.unreadable)) for s in check.splits]))
    width = max(len(r[0]) for r in rows)
    cols = [max(len(h), *(len(r[1][i]) for r in rows)) for i, h in enumerate(heads)]
    lines = [
        f"dataset check (box sizes: longer side at {check.input_size} px input)",
        " " * width + "  " + "  ".join(h.rjust(w) for h, w in zip(heads, cols, strict=True)),
    ]
    for label, values in rows:
        lines.append(
            label.ljust(width)
            + "  "
            + "  ".join(v.rjust(w) for v, w in zip(values, cols, strict=True))
        )
    lines.append(f"duplicate image files: {len(check.duplicates)} groups")
    lines += [f"warning: {w}" for w in check.warnings()]
    return "\n".join(lines)
