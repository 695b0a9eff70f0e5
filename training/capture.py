"""Captured images -> a YOLO dataset to correct, then train and evaluate on.

    python -m training.capture captures/ --output data/captured --model default
    python -m training.capture captures/ --output data/captured --reason unsure --val 10 --test 10

Reads the service's capture folder (DETECTOR_CAPTURE_DIR; training/capture_scan.py: complete
captures only, each image once by its sha256) and writes an Ultralytics-layout dataset:

    DATASET/data.yaml                     train/val/test image folders, names (class-id order), nc
    DATASET/images/{train,val,test}/<sha256[:16]>.<ext>   the captured bytes, unchanged (*)
    DATASET/labels/{train,val,test}/<sha256[:16]>.txt     the model's boxes as YOLO lines
    DATASET/classes.txt                   the class names, one a line (Label Studio's YOLO import)
    DATASET/manifest.json                 per image: split, sha256, reason, model version, time
    DATASET/README.md                     counts per split and reason, and what to do next

(*) The service's labels refer to the image as it displays, EXIF orientation applied, while
the training loader reads stored pixels: an image with an EXIF rotation is written upright
(re-encoded as PNG), as is one in a format the loader does not read (GIF, ...); the manifest
marks them `"converted": true`. Images that cannot be decoded, or whose size is not the
sidecar's, are skipped.

An image's split depends only on its bytes (int(sha256[:8], 16) % 100 against --test, then
--val percent), so a run over more captures never moves an image to another split. Running
again into the same DATASET adds the new images and never overwrites a file already there: the
labels there may have been corrected by hand.

The labels are the MODEL'S OWN GUESSES (pre-labels), not ground truth: training on them teaches
the model its own mistakes, and evaluating on them measures agreement with itself. Correct them
first in a labelling tool: CVAT imports the folder (zipped) as "Ultralytics YOLO Detection",
Label Studio through its YOLO import (classes.txt, images/, labels/); export back in the same
format. `python -m training.check --data DATASET/data.yaml` shows what the dataset holds, and
`python -m training --data DATASET/data.yaml` / `training.promote --data ...` read it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from training.capture_scan import REASONS, Capture, ScanReport, model_folders, scan_model
from training.data.errors import DatasetError
from training.data.yolo import IMAGE_SUFFIXES, read_data_yaml

SPLITS = ("train", "val", "test")
NOTE = ("The labels are the model's own guesses (pre-labels): correct them in a labelling tool "
        "(CVAT: Ultralytics YOLO Detection import; Label Studio: YOLO import) before they are "
        "used as ground truth for training or evaluation.")  # fmt: skip


def split_of(sha256: str, val_percent: int, test_percent: int) -> str:
    """The split of an image by its sha256 alone: its first 8 hex digits mod 100 below
    test_percent -> test, below test + val -> val, else train."""
    bucket = int(sha256[:8], 16) % 100
    if bucket < test_percent:
        return "test"
    return "val" if bucket < test_percent + val_percent else "train"


@dataclass(frozen=True)
class Written:
    added: Counter[str]  # new images per split
    kept: int  # images already in the dataset (their files left as they were)
    other_classes: int  # captures of another class list than the dataset's
    unreadable: list[str]  # captures whose image could not be used (and why)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _atomic_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def dataset_image(capture: Capture) -> tuple[bytes | None, str]:
    """(the bytes to store, their suffix): the captured bytes as they are, or the upright image
    as PNG when it has an EXIF rotation or a format the loader does not read. ValueError when
    it cannot be decoded or its upright size is not the sidecar's."""
    suffix = capture.image.suffix.lower()
    try:
        with Image.open(capture.image) as img:
            orientation = img.getexif().get(0x0112, 1)
            if suffix in IMAGE_SUFFIXES and orientation in (0, 1):
                if img.size != capture.size:
                    raise ValueError(f"size {img.size}, the sidecar says {capture.size}")
                return None, suffix  # copied as it is
            img.seek(0)
            upright = ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot decode the image: {exc}") from exc
    if upright.size != capture.size:
        raise ValueError(f"size {upright.size}, the sidecar says {capture.size}")
    buf = io.BytesIO()
    upright.save(buf, "PNG")
    return buf.getvalue(), ".png"


def data_yaml(names: Sequence[str]) -> str:
    """The data.yaml text: image folders relative to its own folder (no `path:`, which
    Ultralytics would resolve against its datasets folder), names as {id: name}."""
    lines = ["# written by `python -m training.capture`; paths relative to this file's folder",
             *(f"{s}: images/{s}" for s in SPLITS), f"nc: {len(names)}", "names:",
             *(f"  {i}: {json.dumps(n)}" for i, n in enumerate(names))]  # fmt: skip
    return "\n".join(lines) + "\n"


def existing_names(output: Path) -> tuple[str, ...] | None:
    """The class names of a dataset already at `output` (None when there is none)."""
    if not (output / "data.yaml").is_file():
        return None
    return read_data_yaml(output / "data.yaml").names


def write_dataset(captures: Sequence[Capture], output: Path, names: Sequence[str],
                  val_percent: int, test_percent: int) -> Written:  # fmt: skip
    """Copy the captures of class list `names` into the dataset at `output` (see the module)."""
    for kind in ("images", "labels"):
        for split in SPLITS:
            (output / kind / split).mkdir(parents=True, exist_ok=True)
    manifest_path = output / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    entries: dict[str, dict[str, Any]] = {e["sha256"]: e for e in manifest.get("images", [])}
    added: Counter[str] = Counter()
    kept = other = 0
    unreadable: list[str] = []
    for c in captures:
        if c.classes != tuple(names):
            other += 1
            continue
        if c.sha256 in entries:
            kept += 1
            continue
        try:
            converted, suffix = dataset_image(c)
        except ValueError as exc:
            unreadable.append(f"{c.image}: {exc}")
            continue
        split = split_of(c.sha256, val_percent, test_percent)
        stem = c.sha256[:16]
        image = output / "images" / split / f"{stem}{suffix}"
        labels = output / "labels" / split / f"{stem}.txt"
        if image.exists():
            kept += 1
            continue
        try:  # the service may evict a capture meanwhile (its disk budget)
            prelabels = c.labels.read_bytes() if c.labels is not None else b""
            if converted is None:
                _atomic_copy(c.image, image)
            else:
                _atomic_write(image, converted)
        except OSError as exc:
            unreadable.append(f"{c.image}: {exc}")
            continue
        if not labels.exists():  # a label written by hand before its image: left alone
            _atomic_write(labels, prelabels)
        entries[c.sha256] = {"file": f"images/{split}/{image.name}", "split": split,
                             "sha256": c.sha256, "reason": c.reason, "model": c.model,
                             "version": c.version, "time": c.time,
                             "converted": converted is not None}  # fmt: skip
        added[split] += 1
    images = sorted(entries.values(), key=lambda e: e["file"])
    _atomic_write(manifest_path, (json.dumps({"names": list(names), "images": images},
                                             indent=1) + "\n").encode())  # fmt: skip
    _atomic_write(output / "classes.txt", "".join(f"{n}\n" for n in names).encode())
    _atomic_write(output / "data.yaml", data_yaml(names).encode())
    _atomic_write(output / "README.md", readme(images, names).encode())
    return Written(added, kept, other, unreadable)


def readme(images: Sequence[dict[str, Any]], names: Sequence[str]) -> str:
    per_split = Counter(e["split"] for e in images)
    per_reason = Counter(e["reason"] for e in images)
    return "\n".join([
        "# Captured images (python -m training.capture)", "",
        f"**{NOTE}**", "",
        f"Classes ({len(names)}): {', '.join(names)}", "",
        "| split | images |", "|---|---|", *(f"| {s} | {per_split[s]} |" for s in SPLITS), "",
        "Captured because: " + ", ".join(f"{r} {n}" for r, n in sorted(per_reason.items())), "",
        "Check: `python -m training.check --data data.yaml`; fine-tune: `python -m training "
        "--data data.yaml --init-weights MODEL.pt ...`; promote: `python -m training.promote "
        "--candidate NEW.onnx --model NAME --model-dir MODELS --data data.yaml --split test`.",
    ]) + "\n"  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.capture", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("capture_dir", help="the service's DETECTOR_CAPTURE_DIR (or one model's "
                   "folder in it)")  # fmt: skip
    p.add_argument("--output", required=True, help="the dataset folder (created; an existing "
                   "one gains the new images, its files are never overwritten)")  # fmt: skip
    p.add_argument("--model", default=None, help="the model name whose captures to take "
                   "(needed when the folder holds several)")  # fmt: skip
    p.add_argument("--reason", action="append", choices=REASONS, default=None,
                   help="only captures taken for this reason (repeatable; default: all)")
    p.add_argument("--val", type=int, default=10, help="percent of the images in val")
    p.add_argument("--test", type=int, default=10, help="percent of the images in test")
    args = p.parse_args(argv)
    if not (0 <= args.val <= 100 and 0 <= args.test <= 100 and args.val + args.test <= 100):
        p.error("--val and --test are percentages that add up to at most 100")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root, output = Path(args.capture_dir), Path(args.output)
    if not root.is_dir():
        print(f"error: {root}: no such folder", file=sys.stderr)
        return 2
    folders = model_folders(root)
    if args.model is not None:
        folders = {k: v for k, v in folders.items() if k == args.model}
    if len(folders) != 1:
        found = ", ".join(model_folders(root)) or "none"
        what = f"no captures of model {args.model!r}" if args.model or not folders else (
            "captures of several models")  # fmt: skip
        print(f"error: {root}: {what} (models: {found}); pick one with --model", file=sys.stderr)
        return 2
    report = ScanReport()
    captures = scan_model(next(iter(folders.values())), tuple(args.reason or REASONS), report)
    try:
        names = existing_names(output) or (captures[-1].classes if captures else None)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if names is None:
        print(f"error: {root}: no complete captures", file=sys.stderr)
        return 2
    if captures and captures[-1].classes != tuple(names):
        print(f"warning: {output} has the classes {list(names)}, the newest captures "
              f"{list(captures[-1].classes)}: those are left out (another class list is "
              "another dataset)", file=sys.stderr)  # fmt: skip
    written = write_dataset(captures, output, names, args.val, args.test)
    print(f"{output / 'data.yaml'}: {sum(written.added.values())} images added ("
          + ", ".join(f"{s} {written.added[s]}" for s in SPLITS)
          + f"), {written.kept} already there, {report.duplicates} duplicates, "
          f"{report.incomplete} incomplete, {len(report.invalid) + len(written.unreadable)} "
          "invalid, "
          f"{written.other_classes} of other classes, "
          f"{sum(report.other_reasons.values())} of other reasons")
    for line in [*report.invalid, *written.unreadable][:5]:
        print(f"  skipped {line}", file=sys.stderr)
    print(NOTE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
