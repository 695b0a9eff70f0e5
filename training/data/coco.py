"""COCO-format JSON loader (`images`, `annotations`, `categories`).

COCO boxes are [x, y, w, h] in continuous 0-based pixels -> xyxy (x, y, x + w, y + h).
`iscrowd=1` annotations become `difficult=True` (an ignore flag, as VOC difficult).
Sample.image_id is the COCO image id as a string.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from training.data.errors import DatasetError
from training.data.report import LoadReport, ProblemSink
from training.data.sample import Sample, make_arrays
from training.data.validate import DEFAULT_TOLERANCE, InvalidBoxError, check_box, check_classes


def _read_json(json_path: Path) -> dict[str, Any]:
    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{json_path}: cannot read COCO JSON: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DatasetError(f"{json_path}: needs lists 'images', 'annotations' and 'categories'")
    return data


def _categories(data: dict[str, Any], json_path: Path) -> dict[int, str]:
    cats: dict[int, str] = {}
    for cat in data["categories"]:
        try:
            cid, name = int(cat["id"]), str(cat["name"]).strip()
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{json_path}: malformed category {cat!r}") from exc
        if cid in cats:
            raise DatasetError(f"{json_path}: duplicate category id {cid}")
        cats[cid] = name
    if len(set(cats.values())) != len(cats):
        raise DatasetError(f"{json_path}: duplicate category names")
    if not cats:
        raise DatasetError(f"{json_path}: no categories")
    return cats


def _image_entry(
    img: dict[str, Any], image_dir: Path, json_path: Path
) -> tuple[int, Path, int, int]:
    """(id, path, width, height) of an `images` entry; raises DatasetError."""
    try:
        image_id, file_name = int(img["id"]), str(img["file_name"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{json_path}: malformed image entry {img!r}") from exc
    path = image_dir / file_name
    if not os.path.isfile(path):
        raise DatasetError(f"{json_path}: image {image_id}: file {path} not found")
    try:
        width, height = int(img.get("width") or 0), int(img.get("height") or 0)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{json_path}: image {image_id}: malformed width/height") from exc
    if width <= 0 or height <= 0:
        try:
            with Image.open(path) as pil:
                width, height = pil.size
        except OSError as exc:
            raise DatasetError(f"{json_path}: image {image_id}: unreadable {path}") from exc
    return image_id, path, width, height


def load_coco(
    json_path: str | Path,
    image_dir: str | Path,
    classes: Sequence[str] | None = None,
    skip_invalid: bool = False,
    drop_empty: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    report: LoadReport | None = None,
) -> tuple[list[Sample], tuple[str, ...]]:
    """Load a COCO-format dataset; returns (samples, class names; class id = position).

    classes: category names to keep, ids in this order; each must be a category of the file.
        None = every category, in increasing category-id order (contiguous ids 0..C-1).
    skip_invalid / drop_empty / tolerance / report: as in `load_voc`. Invalid: a missing image
        file, an annotation of an unknown image or category, a malformed bbox, a box outside
        the image beyond `tolerance` px, a degenerate box (w or h <= 0).
    """
    json_path, image_dir = Path(json_path), Path(image_dir)
    data = _read_json(json_path)
    cats = _categories(data, json_path)
    if classes is None:
        names = check_classes([cats[c] for c in sorted(cats)], ())
    else:
        names = check_classes(classes, ())
        missing = sorted(set(names) - set(cats.values()))
        if missing:
            raise DatasetError(f"{json_path}: classes not among the categories: {missing}")
    name_to_id = {n: i for i, n in enumerate(names)}
    cat_to_id = {cid: name_to_id.get(name, -1) for cid, name in cats.items()}
    report = report if report is not None else LoadReport()
    sink = ProblemSink(report, skip_invalid)

    entries: dict[int, tuple[Path, int, int]] = {}
    order: list[int] = []
    bad_images: set[int] = set()
    for img in data["images"]:
        try:
            image_id, path, width, height = _image_entry(img, image_dir, json_path)
        except DatasetError as exc:
            sink.bad_image(str(exc))
            with contextlib.suppress(KeyError, TypeError, ValueError):
                bad_images.add(int(img["id"]))
            continue
        if image_id in entries:
            raise DatasetError(f"{json_path}: duplicate image id {image_id}")
        entries[image_id] = (path, width, height)
        order.append(image_id)

    objects: dict[int, tuple[list[tuple[float, float, float, float]], list[int], list[bool]]]
    objects = {i: ([], [], []) for i in order}
    for k, ann in enumerate(data["annotations"]):
        where = f"{json_path}: annotation {ann.get('id', k) if isinstance(ann, dict) else k}"
        try:
            image_id, cat = int(ann["image_id"]), int(ann["category_id"])
            if image_id in bad_images:
                continue
            if image_id not in entries:
                raise InvalidBoxError(f"unknown image_id {image_id}")
            if cat not in cat_to_id:
                raise InvalidBoxError(f"unknown category_id {cat}")
            if cat_to_id[cat] < 0:
                report.drop(cats[cat])
                continue
            bbox = ann["bbox"]
            if not isinstance(bbox, list | tuple) or len(bbox) != 4:
                raise InvalidBoxError(f"bbox must be [x, y, w, h], got {bbox!r}")
            x, y, w, h = (float(v) for v in bbox)
            _, width, height = entries[image_id]
            box, clipped = check_box(x, y, x + w, y + h, width, height, tolerance)
        except (KeyError, TypeError, ValueError) as exc:
            sink.bad_object(f"{where}: {type(exc).__name__}: {exc}")
            continue
        report.clipped_boxes += int(clipped)
        boxes, labels, crowd = objects[image_id]
        boxes.append(box)
        labels.append(cat_to_id[cat])
        crowd.append(bool(ann.get("iscrowd", 0)))

    samples: list[Sample] = []
    for image_id in order:
        path, width, height = entries[image_id]
        sample = Sample(str(image_id), path, width, height, *make_arrays(*objects[image_id]))
        if report.admit(sample, drop_empty):
            samples.append(sample)
    report.images = len(samples)
    sink.finish(f"COCO {json_path}")
    return samples, names
