"""Pascal VOC loader: `Annotations/<id>.xml`, `JPEGImages/<id>.jpg`, `ImageSets/Main/<split>.txt`.

Coordinates: VOC stores 1-based *inclusive* pixel indices (a box over the top-left pixel only is
xmin=ymin=xmax=ymax=1). We convert to continuous 0-based xyxy: (xmin - 1, ymin - 1, xmax, ymax),
so that box width = xmax - xmin + 1 pixels, the convention of the rest of the project.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from model.config import VOC_CLASSES
from training.data.errors import DatasetError
from training.data.report import LoadReport, ProblemSink
from training.data.sample import Sample, make_arrays
from training.data.validate import DEFAULT_TOLERANCE, InvalidBoxError, check_box, check_classes

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
# Files at a VOC-layout root that list its classes, one name per line in class-id order (blank
# lines skipped, names stripped); the first found wins. A convention of ours, not VOC's: a user
# writes one to fix the order or to name classes without objects. LabelImg's Pascal VOC mode
# writes no list; CVAT's Pascal VOC export writes labelmap.txt in another format
# ("name:r,g,b:parts:actions", with a background row), which is not read: the annotation scan
# finds those classes.
CLASS_LIST_FILES: tuple[str, ...] = ("classes.txt", "labels.txt")
# Where `voc_classes` took a dataset's list from: a CLASS_LIST_FILES file; VOC's 20 in VOC order
# (every object name is a VOC class: the bundled model's and every VOC result's ids); the
# sorted names found in all of Annotations/ (every split gets the same ids).
CLASS_SOURCES: tuple[str, ...] = ("file", "voc", "annotations")


def read_split(root: Path, split: str) -> list[str]:
    """Image ids listed in `ImageSets/Main/<split>.txt` (first column; blank lines ignored)."""
    path = root / "ImageSets" / "Main" / f"{split}.txt"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read split file: {exc}") from exc
    ids = [line.split()[0] for line in lines if line.strip()]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: duplicate image ids in split {split!r}")
    return ids


def find_image(root: Path, image_id: str, filename: str | None) -> Path | None:
    image_dir = root / "JPEGImages"
    names = [image_id + ext for ext in IMAGE_EXTENSIONS]
    if filename:
        names.insert(1, filename)
    for name in names:
        candidate = image_dir / name
        if os.path.isfile(candidate):
            return candidate
    return None


@dataclass(frozen=True)
class VocClasses:
    """A VOC-layout dataset's own class list (`voc_classes`)."""

    names: tuple[str, ...]  # class id = position
    source: str  # one of CLASS_SOURCES
    reason: str  # why this list, for the log


# voc_classes' results by (resolved root, Annotations/ mtime and entry count, each class list
# file's name, mtime and size): a file added, removed or renamed, or a list file edited, makes a
# new key (the count and size catch changes within one tick of a coarse file-system clock).
_CacheKey = tuple[str, int, int, tuple[tuple[str, int, int], ...]]
_CLASS_CACHE: dict[_CacheKey, VocClasses] = {}


def annotation_names(root: str | Path) -> set[str]:
    """The class names of every `<object>` in `root/Annotations/*.xml` (stripped).

    Read as `load_voc` reads them (an object's own `<name>`, not its parts'); unparseable files
    and blank names are skipped here: the loader reports them for the splits that hold them.
    """
    names: set[str] = set()
    ann = Path(root) / "Annotations"
    try:
        entries = [e.path for e in os.scandir(ann) if e.name.endswith(".xml") and e.is_file()]
    except OSError as exc:
        raise DatasetError(f"{ann}: cannot list annotations: {exc}") from exc
    for path in entries:
        try:
            tree = ET.parse(path).getroot()
        except (ET.ParseError, OSError):
            continue
        for obj in tree.iter("object"):
            name = (obj.findtext("name") or "").strip()
            if name:
                names.add(name)
    return names


def read_class_list(path: Path) -> tuple[str, ...]:
    """A CLASS_LIST_FILES file: its non-blank lines, stripped (DatasetError if not a valid list)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read class list: {exc}") from exc
    try:
        return check_classes([line.strip() for line in lines if line.strip()], ())
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from exc


def voc_classes(root: str | Path) -> VocClasses:
    """The class list of the VOC-layout dataset at `root` when none is given.

    A CLASS_LIST_FILES file at the root, in its order; else, when every object name in
    Annotations/ is one of the 20 VOC classes (or there are none), VOC_CLASSES in VOC order;
    else the sorted names found in *all* of Annotations/, not only a split's, so that train,
    val and test agree on the ids. Cached per root within the process (a scan of VOC 2012's
    1,943 files takes about 0.1 s) and logged once.
    """
    root = Path(root)
    ann = root / "Annotations"
    try:
        ann_mtime, ann_count = ann.stat().st_mtime_ns, len(os.listdir(ann))
    except OSError as exc:
        raise DatasetError(f"{ann}: {exc}") from exc
    lists = [root / n for n in CLASS_LIST_FILES if (root / n).is_file()]
    stats = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in lists)
    key = (str(root.resolve()), ann_mtime, ann_count, stats)
    if key in _CLASS_CACHE:
        return _CLASS_CACHE[key]
    found = annotation_names(root)
    if lists:
        names = read_class_list(lists[0])
        result = VocClasses(names, "file", f"listed in {lists[0].name}")
        unlisted = sorted(found - set(names))
        if unlisted:
            logger.warning("VOC %s: object names not in %s, dropped as other classes: %s",
                           root, lists[0].name, ", ".join(unlisted))  # fmt: skip
    elif found <= set(VOC_CLASSES):
        result = VocClasses(VOC_CLASSES, "voc", "every object name is a VOC class")
    else:
        result = VocClasses(tuple(sorted(found)), "annotations",
                            "the sorted object names of all of Annotations/: not all VOC "
                            f"classes, no {' or '.join(CLASS_LIST_FILES)}")  # fmt: skip
        voc_like = sorted(found & set(VOC_CLASSES))
        if voc_like:  # a misspelt name in VOC data does this, and every id changes
            logger.warning("VOC %s: names of VOC classes (%s) and others (%s): the ids are the "
                           "sorted names, not VOC's order", root, ", ".join(voc_like),
                           ", ".join(sorted(found - set(VOC_CLASSES))))  # fmt: skip
    logger.info("VOC %s: %d classes (%s): %s", root, len(result.names), result.reason,
                ", ".join(result.names))  # fmt: skip
    _CLASS_CACHE[key] = result
    return result


def _number(node: ET.Element, tag: str) -> float:
    text = node.findtext(tag)
    if text is None:
        raise InvalidBoxError(f"missing <{tag}>")
    try:
        return float(text)
    except ValueError:
        raise InvalidBoxError(f"<{tag}> is not a number: {text!r}") from None


def _image_size(tree: ET.Element, image_path: Path, xml_path: Path) -> tuple[int, int]:
    """(width, height) from <size>, or from the image header when <size> is absent or 0."""
    size = tree.find("size")
    try:
        w = int(float(size.findtext("width", "0"))) if size is not None else 0
        h = int(float(size.findtext("height", "0"))) if size is not None else 0
    except ValueError as exc:
        raise DatasetError(f"{xml_path}: malformed <size>: {exc}") from exc
    if w > 0 and h > 0:
        return w, h
    try:
        with Image.open(image_path) as img:
            return img.size
    except OSError as exc:
        raise DatasetError(f"{xml_path}: no <size> and unreadable image {image_path}") from exc


def _parse_one(
    root: Path,
    image_id: str,
    class_ids: dict[str, int],
    restricted: bool,
    tolerance: float,
    sink: ProblemSink,
) -> Sample | None:
    xml_path = root / "Annotations" / f"{image_id}.xml"
    report = sink.report
    try:
        tree = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as exc:
        sink.bad_image(f"{xml_path}: cannot parse annotation XML: {exc}")
        return None
    image_path = find_image(root, image_id, tree.findtext("filename"))
    if image_path is None:
        where = root / "JPEGImages"
        sink.bad_image(f"{xml_path}: image file for {image_id!r} not found in {where}")
        return None
    try:
        width, height = _image_size(tree, image_path, xml_path)
    except DatasetError as exc:
        sink.bad_image(str(exc))
        return None
    boxes: list[tuple[float, float, float, float]] = []
    labels: list[int] = []
    difficult: list[bool] = []
    for k, obj in enumerate(tree.iter("object")):
        name = (obj.findtext("name") or "").strip()
        if name not in class_ids:
            if restricted and name:
                report.drop(name)
            else:
                sink.bad_object(f"{xml_path}: object {k}: unknown class name {name!r}")
            continue
        try:
            flag = int(float((obj.findtext("difficult") or "0").strip() or "0"))
            bnd = obj.find("bndbox")
            if bnd is None:
                raise InvalidBoxError("missing <bndbox>")
            x1, y1, x2, y2 = (_number(bnd, t) for t in ("xmin", "ymin", "xmax", "ymax"))
            box, clipped = check_box(x1 - 1.0, y1 - 1.0, x2, y2, width, height, tolerance)
        except (InvalidBoxError, ValueError) as exc:
            sink.bad_object(f"{xml_path}: object {k} ({name}): {exc}")
            continue
        report.clipped_boxes += int(clipped)
        boxes.append(box)
        labels.append(class_ids[name])
        difficult.append(flag != 0)
    box_arr, label_arr, diff_arr = make_arrays(boxes, labels, difficult)
    return Sample(image_id, image_path, width, height, box_arr, label_arr, diff_arr)


def load_voc(
    root: str | Path,
    split: str,
    classes: Sequence[str] | None = None,
    skip_invalid: bool = False,
    drop_empty: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    report: LoadReport | None = None,
) -> list[Sample]:
    """Load the `split` of the VOC-layout dataset at `root` (any root, any split name).

    classes: class names; class id = position. None = the 20 VOC classes in VOC order, and then
        any other class name is an error (`voc_classes(root)` gives a dataset's own list, which
        `training.data.source.load_data` uses when it is given none). With an explicit list,
        objects of other classes are dropped (counted in `report.dropped_objects`).
    skip_invalid: False raises `DatasetError` (naming the file) for malformed XML, a missing
        image, an unknown class, a box outside the image by more than `tolerance` px, or a
        degenerate box; True skips that image/object, logs a warning and counts it in `report`.
    drop_empty: drop images left without objects (for training); default keeps them (eval).
    report: a `LoadReport` to fill in with the counts (a summary is logged either way).
    """
    root = Path(root)
    names = check_classes(classes, VOC_CLASSES)
    class_ids = {name: i for i, name in enumerate(names)}
    report = report if report is not None else LoadReport()
    sink = ProblemSink(report, skip_invalid)
    samples: list[Sample] = []
    for image_id in read_split(root, split):
        sample = _parse_one(root, image_id, class_ids, classes is not None, tolerance, sink)
        if sample is not None and report.admit(sample, drop_empty):
            samples.append(sample)
    report.images = len(samples)
    sink.finish(f"VOC {root} [{split}]")
    return samples
