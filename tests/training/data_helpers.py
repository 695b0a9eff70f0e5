"""Helpers of the training.data tests: synthetic VOC trees, images and the real data path."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
VOC_ROOT = Path(os.environ.get("VOC_ROOT", REPO_ROOT / ".." / "shared" / "data" / "voc2012-640"))

# (name, xmin, ymin, xmax, ymax, difficult) in VOC's 1-based inclusive pixels.
VocObject = tuple[str, float, float, float, float, int]


def voc_xml(filename: str, width: int, height: int, objects: Sequence[VocObject]) -> str:
    parts = [f"<annotation><filename>{filename}</filename>"]
    if width > 0:
        parts.append(
            f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
        )
    for name, x1, y1, x2, y2, diff in objects:
        parts.append(
            f"<object><name>{name}</name><difficult>{diff}</difficult><bndbox><xmin>{x1}</xmin>"
            f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        )
    parts.append("</annotation>")
    return "".join(parts)


def write_image(path: Path, width: int, height: int, seed: int = 0) -> None:
    """A smooth random RGB image (PNG: lossless) of width x height."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def write_annotation(root: Path, image_id: str, filename: str, width: int, height: int,
                     objects: Sequence[VocObject]) -> None:  # fmt: skip
    """root/Annotations/<image_id>.xml (width 0: no <size> element)."""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    xml = voc_xml(filename, width, height, objects)
    (root / "Annotations" / f"{image_id}.xml").write_text(xml)


def write_split(root: Path, ids: Sequence[str], split: str) -> None:
    """root/ImageSets/Main/<split>.txt listing `ids`."""
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")


def make_voc_tree(
    root: Path,
    entries: dict[str, tuple[int, int, Sequence[VocObject]]],
    split: str = "train",
    ext: str = ".png",
) -> Path:
    """Write a VOC tree: entries id -> (width, height, objects) on smooth random images with
    `ext`. (Detectable coloured rectangles for training: tests.training.synthetic.make_voc.)"""
    for k, (image_id, (w, h, objects)) in enumerate(entries.items()):
        write_image(root / "JPEGImages" / f"{image_id}{ext}", w or 40, h or 30, seed=k)
        write_annotation(root, image_id, f"{image_id}{ext}", w, h, objects)
    write_split(root, list(entries), split)
    return root


# The evaluation CLIs' tree: three images of cats, dogs, people and a bird (not a model class).
EVAL_IMAGES: list[tuple[str, tuple[int, int], list[VocObject]]] = [
    ("img_a", (200, 150), [("cat", 11, 21, 120, 140, 0), ("dog", 130, 10, 150, 30, 0)]),
    ("img_b", (150, 200), [("person", 21, 31, 70, 90, 0), ("bird", 90, 90, 140, 190, 0),
                           ("dog", 1, 120, 100, 199, 1)]),
    ("img_c", (160, 160), [("person", 5, 5, 130, 150, 0), ("cat", 140, 140, 160, 160, 0)]),
]


def write_eval_voc(root: Path) -> Path:
    """EVAL_IMAGES as noise JPEGs with their annotations, split `val`."""
    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    for image_id, (w, h), objects in EVAL_IMAGES:
        pixels = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{image_id}.jpg", quality=85)
        write_annotation(root, image_id, f"{image_id}.jpg", w, h, objects)
    write_split(root, [i for i, _, _ in EVAL_IMAGES], "val")
    return root


def assert_valid_boxes(boxes: np.ndarray, labels: np.ndarray, width: int, height: int) -> None:
    """Boxes inside the image, positive width and height, one label per box."""
    boxes = np.asarray(boxes)
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert np.asarray(labels).dtype == np.int64 and len(labels) == len(boxes)
    assert np.isfinite(boxes).all()
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
