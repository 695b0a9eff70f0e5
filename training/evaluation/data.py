"""The data side of the evaluation CLIs (training/evaluation/evaluate.py, compare.py and
error_analysis.py): their shared flags, the split they read and how dataset
class ids map to the model's."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from training.data.sample import Sample


def class_mapping(model_names: Sequence[str], dataset_names: Sequence[str]) -> np.ndarray:
    """(len(dataset_names),) dataset class id -> model class id, -1 where the model lacks it.

    Raises ValueError if the dataset lacks one of the model's classes.
    """
    missing = [n for n in model_names if n not in dataset_names]
    if missing:
        raise ValueError(f"the dataset classes {list(dataset_names)} lack the model's "
                         f"classes {missing}; pass the dataset's class list with --classes")
    index = {n: i for i, n in enumerate(model_names)}
    return np.array([index.get(n, -1) for n in dataset_names], dtype=np.int64)


def add_data_args(p: argparse.ArgumentParser) -> None:
    """The model and data flags the evaluation CLIs share (read by `load_split`)."""
    p.add_argument("--model", required=True, help="an .onnx file (fp32/INT8) or a .pt checkpoint")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", help="the dataset, its format recognised: a YOLO data.yaml, a "
                       "COCO .json, a Roboflow COCO export folder or a VOC folder")
    where.add_argument("--data-root", help="a VOC-layout root (Annotations, ...); as --data")
    p.add_argument("--split", default="val", help="train, val or test (VOC: "
                   "ImageSets/Main/<split>.txt)")  # fmt: skip
    p.add_argument("--classes", default=None,
                   help="comma-separated dataset class names (default: the dataset's own list; "
                   "for VOC folders the model's classes, objects of other classes unscored; an "
                   "error if the folder has none of them)")
    p.add_argument("--limit", type=int, default=0, help="the first N images (0 = all)")
    p.add_argument("--skip-invalid", action="store_true",
                   help="skip malformed annotations instead of failing")


def load_split(
    args: argparse.Namespace, model_names: Sequence[str]
) -> tuple[tuple[str, ...], np.ndarray, list[Sample]]:
    """`add_data_args`' flags -> (dataset class names, `class_mapping`, samples).

    ValueError (with a message for the user) when the dataset lacks a model class or the split
    has no images.
    """
    from training.data.errors import DatasetError
    from training.data.source import data_format, load_data  # (imports model.config)
    from training.data.voc import voc_classes

    path = args.data or args.data_root
    classes = tuple(c.strip() for c in args.classes.split(",")) if args.classes else None
    try:
        if classes is None and data_format(path) == "voc":
            # The model carries its classes: a VOC folder is read with them (objects of other
            # classes are not scored; a folder may well lack a class, as its list is no more
            # than the names its annotations use), unless it shares none of them.
            own = voc_classes(path).names
            if not set(model_names) & set(own):
                raise ValueError(f"the dataset classes {list(own)} share none of the model's "
                                 f"classes {list(model_names)}")  # fmt: skip
            classes = tuple(model_names)
        samples, dataset_classes = load_data(path, args.split, classes,
                                             skip_invalid=args.skip_invalid)  # fmt: skip
    except DatasetError as exc:
        raise ValueError(str(exc)) from exc
    to_model = class_mapping(model_names, dataset_classes)
    if args.limit > 0:
        samples = samples[: args.limit]
    if not samples:
        raise ValueError(f"no images in split {args.split!r} of {path}")
    return dataset_classes, to_model, samples
