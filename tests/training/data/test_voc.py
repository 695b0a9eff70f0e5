"""VOC loader: synthetic trees (conversion, subsets, every invalid case, the dataset's own class
list) and the real data."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from model.config import VOC_CLASSES
from tests.training.data_helpers import VOC_ROOT, make_voc_tree, voc_xml
from training.data import DatasetError, LoadReport, load_voc
from training.data.source import load_data
from training.data.voc import read_split, voc_classes

CAR, PERSON, DOG = (VOC_CLASSES.index(c) for c in ("car", "person", "dog"))


def basic_tree(root: Path) -> Path:
    return make_voc_tree(root, {
        "a": (40, 30, [("car", 1, 1, 10, 20, 0), ("person", 5, 6, 40, 30, 1)]),
        "b": (50, 50, [("dog", 11, 21, 30, 41, 0)]),
        "c": (20, 20, [("dog", 1, 1, 20, 20, 0)]),
    })  # fmt: skip


def test_one_based_conversion_labels_and_difficult(tmp_path: Path) -> None:
    samples = load_voc(basic_tree(tmp_path), "train")
    assert [s.image_id for s in samples] == ["a", "b", "c"]
    a = samples[0]
    assert (a.width, a.height) == (40, 30)
    assert a.image_path == tmp_path / "JPEGImages" / "a.png"
    # xmin-1, ymin-1, xmax, ymax: a full-image box (1, 1, W, H) becomes (0, 0, W, H).
    np.testing.assert_array_equal(a.boxes, [[0, 0, 10, 20], [4, 5, 40, 30]])
    assert a.boxes.dtype == np.float32 and a.labels.dtype == np.int64
    assert a.labels.tolist() == [CAR, PERSON]
    assert a.difficult.tolist() == [False, True] and a.difficult.dtype == bool
    np.testing.assert_array_equal(samples[2].boxes, [[0, 0, 20, 20]])


def test_subset_classes_follow_given_order_and_empty_images(tmp_path: Path) -> None:
    root = basic_tree(tmp_path)
    report = LoadReport()
    samples = load_voc(root, "train", classes=["person", "car"], report=report)
    assert samples[0].labels.tolist() == [1, 0]  # car -> 1, person -> 0
    assert [s.num_objects for s in samples] == [2, 0, 0]  # dogs dropped, images kept
    assert report.dropped_objects == 2 and report.empty_images == 2
    assert report.dropped_by_class == {"dog": 2} and "dog" in report.summary()
    assert report.images == 3 and report.objects == 2 and report.difficult == 1
    r = LoadReport()
    kept = load_voc(root, "train", classes=["person", "car"], drop_empty=True, report=r)
    assert [s.image_id for s in kept] == ["a"] and r.dropped_empty_images == 2
    dogs = load_voc(root, "train", classes=("dog",))
    assert [s.labels.tolist() for s in dogs] == [[], [0], [0]]
    assert dogs[0].boxes.shape == (0, 4)


def test_any_split_name_and_jpg(tmp_path: Path) -> None:
    make_voc_tree(tmp_path, {"x1": (30, 30, [("cat", 2, 2, 9, 9, 0)])}, split="my-split",
                  ext=".jpg")
    (s,) = load_voc(tmp_path, "my-split")
    assert s.image_path.name == "x1.jpg"


def test_size_read_from_image_when_missing(tmp_path: Path) -> None:
    make_voc_tree(tmp_path, {"n": (0, 0, [("cat", 2, 2, 9, 9, 0)])})  # no <size>; image is 40x30
    (s,) = load_voc(tmp_path, "train")
    assert (s.width, s.height) == (40, 30)


def test_box_within_tolerance_is_clipped(tmp_path: Path) -> None:
    make_voc_tree(tmp_path, {"t": (40, 30, [("cat", 0, 1, 41.5, 31, 0)])})
    report = LoadReport()
    (s,) = load_voc(tmp_path, "train", report=report)
    np.testing.assert_array_equal(s.boxes, [[0, 0, 40, 30]])
    assert report.clipped_boxes == 1


BAD_OBJECTS = {
    "unknown class": [("unicorn", 1, 1, 5, 5, 0)],
    "outside the image": [("cat", 1, 1, 45, 10, 0)],
    "negative": [("cat", -5, 1, 10, 10, 0)],
    "degenerate x": [("cat", 10, 1, 5, 10, 0)],
    "degenerate y": [("cat", 1, 10, 10, 8, 0)],
    "missing coordinate": [("cat", 1, 1, 10, "", 0)],
    "not a number": [("cat", "one", 1, 10, 10, 0)],
    "bad difficult": [("cat", 1, 1, 10, 10, "maybe")],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_OBJECTS))
def test_invalid_object_raises_naming_the_file(tmp_path: Path, case: str) -> None:
    good = [("cat", 1, 1, 5, 5, 0)]
    make_voc_tree(tmp_path, {"ok": (40, 30, good), "bad": (40, 30, BAD_OBJECTS[case])})
    with pytest.raises(DatasetError, match=r"bad\.xml"):
        load_voc(tmp_path, "train")


@pytest.mark.parametrize("case", sorted(BAD_OBJECTS))
def test_invalid_object_skipped_and_counted(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    objs = [("cat", 1, 1, 5, 5, 0), *BAD_OBJECTS[case]]
    make_voc_tree(tmp_path, {"ok": (40, 30, [("cat", 1, 1, 5, 5, 0)]), "bad": (40, 30, objs)})
    report = LoadReport()
    with caplog.at_level(logging.WARNING):
        samples = load_voc(tmp_path, "train", skip_invalid=True, report=report)
    assert [s.num_objects for s in samples] == [1, 1]
    assert report.skipped_objects == 1 and report.skipped_images == 0
    assert "bad.xml" in report.problems[0] and "bad.xml" in caplog.text


def _break(root: Path, case: str) -> None:
    if case == "malformed xml":
        (root / "Annotations" / "bad.xml").write_text("<annotation><object>")
    elif case == "missing image":
        (root / "JPEGImages" / "bad.png").unlink()
    elif case == "missing annotation":
        (root / "Annotations" / "bad.xml").unlink()
    elif case == "bad size":
        (root / "Annotations" / "bad.xml").write_text(
            voc_xml("bad.png", 40, 30, []).replace("<width>40", "<width>forty")
        )


@pytest.mark.parametrize(
    "case", ["malformed xml", "missing image", "missing annotation", "bad size"]
)
def test_invalid_image_raises_or_is_skipped(tmp_path: Path, case: str) -> None:
    make_voc_tree(tmp_path, {"ok": (40, 30, [("cat", 1, 1, 5, 5, 0)]), "bad": (40, 30, [])})
    _break(tmp_path, case)
    with pytest.raises(DatasetError, match=r"bad\.xml"):
        load_voc(tmp_path, "train")
    report = LoadReport()
    samples = load_voc(tmp_path, "train", skip_invalid=True, report=report)
    assert [s.image_id for s in samples] == ["ok"]
    assert report.skipped_images == 1 and report.images == 1 and len(report.problems) == 1


def test_missing_split_and_bad_classes(tmp_path: Path) -> None:
    basic_tree(tmp_path)
    with pytest.raises(DatasetError, match=r"nosuch\.txt"):
        load_voc(tmp_path, "nosuch")
    for bad in ([], ["car", "car"], "car", ["car", ""]):
        with pytest.raises(DatasetError):
            load_voc(tmp_path, "train", classes=bad)
    (tmp_path / "ImageSets" / "Main" / "dup.txt").write_text("a\nb\na\n")
    with pytest.raises(DatasetError, match="duplicate"):
        read_split(tmp_path, "dup")


# Objects per class from the dataset README (train / val).
README_COUNTS = {
    "aeroplane": (83, 55), "bicycle": (79, 15), "bird": (116, 49), "boat": (151, 48),
    "bottle": (174, 43), "bus": (46, 22), "car": (290, 92), "cat": (112, 36),
    "chair": (363, 74), "cow": (67, 25), "diningtable": (82, 25), "dog": (135, 33),
    "horse": (88, 23), "motorbike": (99, 28), "person": (1900, 521), "pottedplant": (154, 42),
    "sheep": (75, 16), "sofa": (91, 16), "train": (54, 24), "tvmonitor": (92, 34),
}  # fmt: skip


@pytest.mark.skipif(not VOC_ROOT.is_dir(), reason=f"VOC data not found at {VOC_ROOT}")
@pytest.mark.parametrize(("split", "images", "objects", "col"), [
    ("train", 1472, 4251, 0), ("val", 471, 1221, 1),
])  # fmt: skip
def test_real_voc_counts(split: str, images: int, objects: int, col: int) -> None:
    report = LoadReport()
    samples = load_voc(VOC_ROOT, split, report=report)
    assert len(samples) == images and sum(s.num_objects for s in samples) == objects
    assert report.skipped_images == report.skipped_objects == report.clipped_boxes == 0
    counts = np.bincount(np.concatenate([s.labels for s in samples]), minlength=20)
    assert dict(zip(VOC_CLASSES, counts.tolist(), strict=True)) == {
        k: v[col] for k, v in README_COUNTS.items()
    }
    for s in samples:
        assert (s.width, s.height) == (640, 640) and s.image_path.is_file()
        assert (s.boxes[:, 2:] > s.boxes[:, :2]).all() and s.boxes.min() >= 0
        assert s.boxes.max() <= 640 and not s.difficult.any()


# --- A VOC-layout dataset's own class list (voc_classes, through load_data) ---

CELLS = {  # a BCCD-like tree: Platelets only in val; names that are no VOC class
    "train": {"t1": (40, 30, [("WBC", 1, 1, 10, 10, 0), ("RBC", 5, 5, 20, 20, 0)]),
              "t2": (40, 30, [("RBC", 2, 2, 12, 12, 0)])},
    "val": {"v1": (40, 30, [("Platelets", 3, 3, 9, 9, 0), ("RBC", 1, 1, 8, 8, 0)])},
}  # fmt: skip


def cells_tree(root: Path) -> Path:
    for split, entries in CELLS.items():
        make_voc_tree(root, entries, split=split)
    return root


def test_other_classes_are_the_sorted_names_of_all_annotations(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = cells_tree(tmp_path)
    # In no split, yet counted (all of Annotations/); a part's <name> is not a class; an
    # unparseable file is the loader's to report.
    (root / "Annotations" / "orphan.xml").write_text(
        "<annotation><object><name> Basophil </name><part><name>hand</name></part></object>"
        "</annotation>"
    )
    (root / "Annotations" / "broken.xml").write_text("<annotation><object>")
    with caplog.at_level(logging.INFO, logger="training.data.voc"):
        train, names = load_data(root, "train")
        val, val_names = load_data(root, "val")
    assert names == val_names == ("Basophil", "Platelets", "RBC", "WBC")
    assert [s.labels.tolist() for s in train] == [[3, 2], [2]]
    assert val[0].labels.tolist() == [1, 2]  # Platelets, only in val, has the same id
    chosen = [r for r in caplog.records if "4 classes" in r.getMessage()]
    assert len(chosen) == 1 and "sorted" in chosen[0].getMessage()  # logged once, with why
    assert voc_classes(root).source == "annotations"


def test_voc_names_only_keep_the_voc_classes(tmp_path: Path) -> None:
    root = basic_tree(tmp_path)  # car, person, dog: VOC classes, not all 20
    samples, names = load_data(root, "train")
    assert names == VOC_CLASSES
    assert samples[0].labels.tolist() == [CAR, PERSON]
    empty = make_voc_tree(tmp_path / "empty", {"e": (40, 30, [])})  # no objects at all
    assert load_data(empty, "train")[1] == VOC_CLASSES


def test_voc_names_mixed_with_others_are_sorted_and_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_voc_tree(tmp_path, {"m": (40, 30, [("person", 1, 1, 9, 9, 0), ("persn", 2, 2, 8, 8, 0)])})
    with caplog.at_level(logging.WARNING, logger="training.data.voc"):
        assert load_data(tmp_path, "train")[1] == ("persn", "person")
    assert "persn" in caplog.text


@pytest.mark.parametrize("filename", ["classes.txt", "labels.txt"])
def test_a_class_list_file_is_honoured_in_its_order(
    tmp_path: Path, filename: str, caplog: pytest.LogCaptureFixture
) -> None:
    root = cells_tree(tmp_path)
    (root / filename).write_text("WBC\n RBC \n\nEosinophil\n")  # no Platelets; one without objects
    report = LoadReport()
    with caplog.at_level(logging.WARNING, logger="training.data.voc"):
        val, names = load_data(root, "val", report=report)
    assert names == ("WBC", "RBC", "Eosinophil")
    assert val[0].labels.tolist() == [1]  # Platelets: not listed, dropped and counted
    assert report.dropped_by_class == {"Platelets": 1} and "Platelets" in caplog.text
    train, _ = load_data(root, "train")
    assert [s.labels.tolist() for s in train] == [[0, 1], [1]]


def test_a_class_list_file_wins_over_voc_names_and_must_be_valid(tmp_path: Path) -> None:
    root = basic_tree(tmp_path)
    (root / "classes.txt").write_text("dog\ncar\nperson\n")
    samples, names = load_data(root, "train")
    assert names == ("dog", "car", "person") and samples[0].labels.tolist() == [1, 2]
    for bad in ("dog\ncar\ndog\n", "\n \n"):  # a duplicate; no names
        (root / "classes.txt").write_text(bad)  # edited: not the cached list
        with pytest.raises(DatasetError, match=r"classes\.txt"):
            load_data(root, "train")


def test_explicit_classes_still_win(tmp_path: Path) -> None:
    root = cells_tree(tmp_path)
    (root / "classes.txt").write_text("WBC\nRBC\nPlatelets\n")
    report = LoadReport()
    train, names = load_data(root, "train", classes=["RBC"], report=report)
    assert names == ("RBC",) and [s.labels.tolist() for s in train] == [[0], [0]]
    assert report.dropped_by_class == {"WBC": 1}


def test_a_data_run_trains_on_the_datasets_classes(tmp_path: Path) -> None:
    """The trainer's --data loading (no --classes): train and val get the same list."""
    from training.config import TrainConfig
    from training.data.loaders import load_samples

    cfg = TrainConfig(data=str(cells_tree(tmp_path)))
    (train, names), (val, val_names) = load_samples(cfg, True), load_samples(cfg, False)
    assert names == val_names == ("Platelets", "RBC", "WBC") and len(train) == len(val) + 1


BCCD_ROOT = VOC_ROOT.parent / "bccd"


@pytest.mark.skipif(not BCCD_ROOT.is_dir(), reason=f"BCCD data not found at {BCCD_ROOT}")
def test_real_bccd_by_path_and_voc_classes_of_the_voc_copy() -> None:
    counts = np.zeros(3, dtype=np.int64)
    for split in ("train", "val", "test"):
        samples, names = load_data(BCCD_ROOT, split)
        assert names == ("Platelets", "RBC", "WBC")
        counts += np.bincount(np.concatenate([s.labels for s in samples]), minlength=3)
    assert counts.tolist() == [361, 4155, 372]  # its README's counts
    if VOC_ROOT.is_dir():
        assert voc_classes(VOC_ROOT) == voc_classes(VOC_ROOT)  # cached
        assert voc_classes(VOC_ROOT).names == VOC_CLASSES
