"""`--data PATH`: the dataset format recognised from what is passed, then one split loaded.

- a `.yaml`/`.yml` file: YOLO (Ultralytics / Roboflow data.yaml; training/data/yolo.py);
- a `.json` file: COCO annotations, images beside the file (Roboflow's COCO export) - the file
  is every split's data (use the --coco-* flags for separate train and val files);
- a folder holding `<split>/_annotations.coco.json`: Roboflow's COCO export, one per split;
- a folder holding `Annotations/` and `ImageSets/Main/`: Pascal VOC (splits: its split files;
  classes: `training.data.voc.voc_classes`: a classes.txt/labels.txt, VOC's 20 when every
  object is a VOC class, else the sorted names of all its annotations).

Splits are named train, val and test; `valid` is read as val (Roboflow's name).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from training.data.errors import DatasetError
from training.data.report import LoadReport
from training.data.sample import Sample

FORMATS = ("yolo", "coco", "coco-dir", "voc")
ROBOFLOW_COCO = "_annotations.coco.json"


def data_format(path: str | Path) -> str:
    """One of FORMATS for `path` (DatasetError when it is none of them)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_file() and suffix in (".yaml", ".yml"):
        return "yolo"
    if path.is_file() and suffix == ".json":
        return "coco"
    if path.is_dir():
        if (path / "Annotations").is_dir() and (path / "ImageSets" / "Main").is_dir():
            return "voc"
        if any((path / s / ROBOFLOW_COCO).is_file() for s in ("train", "valid", "val", "test")):
            return "coco-dir"
        if (path / "data.yaml").is_file():
            return "yolo"
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    raise DatasetError(
        f"{path}: not a recognised dataset (a YOLO data.yaml, a COCO .json, a Roboflow COCO "
        "export folder or a VOC folder with Annotations/ and ImageSets/Main/)"
    )


def _voc_split(root: Path, split: str) -> str | None:
    """The VOC split file for `split` (train falls back to trainval), or None."""
    main = root / "ImageSets" / "Main"
    for name in (split, "valid" if split == "val" else "", "trainval" if split == "train" else ""):
        if name and (main / f"{name}.txt").is_file():
            return name
    return None


def has_split(path: str | Path, split: str) -> bool:
    """Whether the dataset at `path` has `split` (train, val or test)."""
    fmt, path = data_format(path), Path(path)
    if fmt == "yolo":
        from training.data.yolo import read_data_yaml

        yaml_path = path / "data.yaml" if path.is_dir() else path
        return ("val" if split == "valid" else split) in read_data_yaml(yaml_path).splits
    if fmt == "coco":
        return split == "train"
    if fmt == "coco-dir":
        return _coco_dir_json(path, split) is not None
    return _voc_split(path, split) is not None


def _coco_dir_json(root: Path, split: str) -> Path | None:
    names = ("valid", "val") if split in ("val", "valid") else (split,)
    for name in names:
        if (root / name / ROBOFLOW_COCO).is_file():
            return root / name / ROBOFLOW_COCO
    return None


def load_data(
    path: str | Path,
    split: str,
    classes: Sequence[str] | None = None,
    *,
    drop_empty: bool = False,
    skip_invalid: bool = False,
    report: LoadReport | None = None,
) -> tuple[list[Sample], tuple[str, ...]]:
    """Load `split` of the dataset at `path`: (samples, class names; label id = position).

    classes: the names to keep, in this order (objects of other classes are dropped); None =
        the dataset's own list (VOC layout: `voc_classes`, the same for every split). YOLO data
        never fails on a bad box (dropped and counted); VOC and COCO follow `skip_invalid`.
    """
    fmt, path = data_format(path), Path(path)
    report = report if report is not None else LoadReport()
    if fmt == "yolo":
        from training.data.yolo import load_yolo

        yaml_path = path / "data.yaml" if path.is_dir() else path
        return load_yolo(yaml_path, split, classes, drop_empty=drop_empty, report=report)
    if fmt in ("coco", "coco-dir"):
        from training.data.coco import load_coco

        json_path = path if fmt == "coco" else _coco_dir_json(path, split)
        if json_path is None:
            raise DatasetError(f"{path}: no {split!r} split ({split}/{ROBOFLOW_COCO})")
        return load_coco(json_path, json_path.parent, classes, skip_invalid=skip_invalid,
                         drop_empty=drop_empty, report=report)  # fmt: skip
    from training.data.voc import load_voc, voc_classes

    name = _voc_split(path, split)
    if name is None:
        raise DatasetError(f"{path}: no ImageSets/Main/{split}.txt")
    names = tuple(classes) if classes is not None else None
    if names is None:
        own = voc_classes(path)
        names = own.names
        # VOC's 20 are load_voc's default (an unknown name is an error), as they always were.
        classes = None if own.source == "voc" else own.names
    samples = load_voc(path, name, classes, skip_invalid=skip_invalid, drop_empty=drop_empty,
                       report=report)  # fmt: skip
    return samples, names
