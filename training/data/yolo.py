"""YOLO-format datasets (Ultralytics / Roboflow `data.yaml`): images plus `labels/*.txt`.

    path: ../datasets/mine      # optional root, relative to the yaml's folder (default: it)
    train: images/train         # an image folder, a .txt list of images, or a list of those
    val: images/val
    test: images/test           # optional
    names: [cat, dog]           # or {0: cat, 1: dog}; `nc` is optional

Roboflow exports write `train: ../train/images` next to `train/`: a relative path that does not
exist is also tried without its leading `../` (as Ultralytics does). An image's labels are in
the sibling `labels/` folder (the last `images` path component replaced by `labels`), one
object a line: `class cx cy w h`, normalised to 0..1 (a longer line is a polygon `class x1 y1
x2 y2 ...`, whose bounding box is taken). An image without a label file, or with an empty one,
is a background image. Malformed lines, unknown class ids and boxes outside the image or
without area are dropped and counted (`LoadReport.skipped_objects`), never fatal; slight
overshoots (within `tolerance` px) are clipped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from training.data.errors import DatasetError
from training.data.report import LoadReport, ProblemSink
from training.data.sample import Sample, make_arrays
from training.data.validate import DEFAULT_TOLERANCE, InvalidBoxError, check_box, check_classes

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
SPLIT_KEYS = ("train", "val", "test")


@dataclass(frozen=True)
class YoloSpec:
    """A parsed data.yaml: the class names and, per split, its image sources (absolute)."""

    yaml_path: Path
    root: Path
    names: tuple[str, ...]
    splits: dict[str, tuple[Path, ...]]


def _names(raw: Any, where: Path) -> tuple[str, ...]:
    if isinstance(raw, dict):
        try:
            ids = sorted(int(k) for k in raw)
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{where}: `names` keys must be class ids: {exc}") from exc
        if ids != list(range(len(ids))):
            raise DatasetError(f"{where}: `names` ids must be 0..{len(ids) - 1}, got {ids}")
        by_id = {int(k): v for k, v in raw.items()}
        raw = [by_id[i] for i in ids]
    if not isinstance(raw, list):
        raise DatasetError(f"{where}: `names` must be a list or a {{id: name}} mapping")
    return check_classes([str(n).strip() for n in raw], ())


def _resolve(root: Path, entry: str) -> Path:
    path = Path(os.path.expanduser(entry))
    if path.is_absolute():
        return path
    candidate = (root / path).resolve()
    if not candidate.exists() and entry.startswith("../"):  # Roboflow: ../train/images
        stripped = (root / entry[3:]).resolve()
        if stripped.exists():
            return stripped
    return candidate


def read_data_yaml(path: str | Path) -> YoloSpec:
    """Parse an Ultralytics/Roboflow data.yaml (DatasetError on a malformed file)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: cannot read data.yaml: {exc}") from exc
    if not isinstance(data, dict) or "names" not in data:
        raise DatasetError(f"{path}: a data.yaml needs `names` (and `train`/`val` image paths)")
    names = _names(data["names"], path)
    if data.get("nc") is not None and int(data["nc"]) != len(names):
        raise DatasetError(f"{path}: nc={data['nc']} but {len(names)} names")
    base = path.parent.resolve()
    root = _resolve(base, str(data["path"])) if data.get("path") else base
    splits: dict[str, tuple[Path, ...]] = {}
    for key in SPLIT_KEYS:
        entries = data.get(key)
        if not entries:
            continue
        entries = entries if isinstance(entries, list) else [entries]
        splits[key] = tuple(_resolve(root, str(e)) for e in entries)
    return YoloSpec(path, root, names, splits)


def _list_images(source: Path) -> list[Path]:
    """An image folder (recursive, sorted), a .txt list of images or a single image."""
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if source.suffix.lower() == ".txt":
        out = []
        for line in source.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line:
                p = Path(line)
                out.append(p if p.is_absolute() else (source.parent / p).resolve())
        return out
    if source.suffix.lower() in IMAGE_SUFFIXES and source.is_file():
        return [source]
    raise DatasetError(f"{source}: not an image folder, an image list (.txt) or an image")


def label_path(image: Path) -> Path:
    """.../images/x/a.jpg -> .../labels/x/a.txt (the last `images` component; else beside it)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _parse_line(line: str, nc: int) -> tuple[int, float, float, float, float]:
    """-> (class id, x1, y1, x2, y2) normalised; InvalidBoxError when unusable."""
    fields = line.split()
    try:
        values = [float(v) for v in fields]
    except ValueError:
        raise InvalidBoxError(f"not numbers: {line!r}") from None
    if len(values) < 5 or (len(values) > 5 and len(values) % 2 == 0):
        raise InvalidBoxError(f"expected `class cx cy w h` or a polygon, got {line!r}")
    cls = values[0]
    if cls != int(cls) or not 0 <= cls < nc:
        raise InvalidBoxError(f"class id {fields[0]} outside 0..{nc - 1}")
    if len(values) == 5:
        cx, cy, w, h = values[1:]
        return int(cls), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    xs, ys = values[1::2], values[2::2]
    return int(cls), min(xs), min(ys), max(xs), max(ys)


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def _sample(
    image: Path, root: Path, names: Sequence[str], remap: list[int], tolerance: float,
    sink: ProblemSink,
) -> Sample | None:  # fmt: skip
    try:
        width, height = image_size(image)
    except OSError as exc:
        sink.bad_image(f"{image}: unreadable image: {exc}")
        return None
    boxes: list[tuple[float, float, float, float]] = []
    labels: list[int] = []
    lpath = label_path(image)
    lines = lpath.read_text(encoding="utf-8").splitlines() if lpath.is_file() else []
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            cls, x1, y1, x2, y2 = _parse_line(line, len(names))
            box, clipped = check_box(x1 * width, y1 * height, x2 * width, y2 * height,
                                     width, height, tolerance)  # fmt: skip
        except InvalidBoxError as exc:
            sink.bad_object(f"{lpath}:{k + 1}: {exc}")
            continue
        if remap[cls] < 0:
            sink.report.drop(names[cls])
            continue
        sink.report.clipped_boxes += int(clipped)
        boxes.append(box)
        labels.append(remap[cls])
    try:
        image_id = str(image.relative_to(root).with_suffix(""))
    except ValueError:
        image_id = str(image.with_suffix(""))
    box_arr, label_arr, diff_arr = make_arrays(boxes, labels, [False] * len(labels))
    return Sample(image_id, image, width, height, box_arr, label_arr, diff_arr)


def load_yolo(
    yaml_path: str | Path,
    split: str,
    classes: Sequence[str] | None = None,
    drop_empty: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    report: LoadReport | None = None,
) -> tuple[list[Sample], tuple[str, ...]]:
    """Load `split` (train, val or test; `valid` is read as val) of a data.yaml dataset.

    classes: names to keep, ids in this order (each must be one of the yaml's names); None =
        the yaml's names. Returns (samples, class names). Problems are skipped and counted.
    """
    spec = read_data_yaml(yaml_path)
    key = "val" if split == "valid" else split
    if key not in spec.splits:
        raise DatasetError(f"{spec.yaml_path}: no {key!r} split (has {sorted(spec.splits)})")
    names = spec.names if classes is None else check_classes(classes, ())
    missing = sorted(set(names) - set(spec.names))
    if missing:
        raise DatasetError(f"{spec.yaml_path}: classes not in its names {spec.names}: {missing}")
    position = {n: i for i, n in enumerate(names)}
    remap = [position.get(n, -1) for n in spec.names]
    report = report if report is not None else LoadReport()
    sink = ProblemSink(report, skip_invalid=True)
    samples: list[Sample] = []
    for source in spec.splits[key]:
        if not source.exists():
            raise DatasetError(f"{spec.yaml_path}: {key} path {source} does not exist")
        for image in _list_images(source):
            sample = _sample(image, spec.root, spec.names, remap, tolerance, sink)
            if sample is not None and report.admit(sample, drop_empty):
                samples.append(sample)
    report.images = len(samples)
    sink.finish(f"YOLO {spec.yaml_path} [{key}]")
    return samples, names
