"""The data side of the evaluation CLIs (`training.evaluate`, `training.compare`,
`training.evaluation.error_analysis`): their shared flags, the split they read and how dataset
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
    p.add_argument("--data-root", required=True, help="VOC-layout root (Annotations, ...)")
    p.add_argument("--split", default="val", help="ImageSets/Main/<split>.txt")
    p.add_argument("--classes", default=None,
                   help="comma-separated dataset class names (default: the 20 VOC classes)")
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
    from training.data.voc import load_voc  # (imports model.config)

    if args.classes:
        dataset_classes: tuple[str, ...] = tuple(c.strip() for c in args.classes.split(","))
    else:
        from model.config import VOC_CLASSES

        dataset_classes = VOC_CLASSES
    to_model = class_mapping(model_names, dataset_classes)
    samples = load_voc(args.data_root, args.split, classes=dataset_classes,
                       skip_invalid=args.skip_invalid)
    if args.limit > 0:
        samples = samples[: args.limit]
    if not samples:
        raise ValueError(f"no images in split {args.split!r} of {args.data_root}")
    return dataset_classes, to_model, samples
