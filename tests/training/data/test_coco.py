"""COCO loader on small synthetic JSON files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.training.data_helpers import write_image
from training.data import DatasetError, LoadReport, load_coco


def coco_tree(root: Path, **changes: Any) -> Path:
    """Images 1 (40x30) and 5 (50x50); categories with non-contiguous ids, listed unsorted."""
    write_image(root / "img" / "one.png", 40, 30)
    write_image(root / "img" / "five.png", 50, 50)
    data: dict[str, Any] = {
        "images": [
            {"id": 1, "file_name": "one.png", "width": 40, "height": 30},
            {"id": 5, "file_name": "five.png", "width": 50, "height": 50},
        ],
        "categories": [
            {"id": 7, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 20], "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 7, "bbox": [0, 0, 40, 30], "iscrowd": 1},
            {"id": 12, "image_id": 5, "category_id": 3, "bbox": [10.5, 5, 4.5, 6]},
        ],
    }  # fmt: skip
    data.update(changes)
    path = root / "ann.json"
    path.write_text(json.dumps(data))
    return path


def test_xywh_to_xyxy_crowd_and_category_order(tmp_path: Path) -> None:
    samples, names = load_coco(coco_tree(tmp_path), tmp_path / "img")
    assert names == ("person", "car", "dog")  # category-id order 1, 3, 7
    one, five = samples
    assert (one.image_id, one.width, one.height) == ("1", 40, 30)
    assert one.image_path == tmp_path / "img" / "one.png"
    np.testing.assert_array_equal(one.boxes, [[2, 3, 12, 23], [0, 0, 40, 30]])
    assert one.labels.tolist() == [0, 2] and one.difficult.tolist() == [False, True]
    np.testing.assert_allclose(five.boxes, [[10.5, 5, 15, 11]])
    assert five.labels.tolist() == [1] and five.boxes.dtype == np.float32


def test_classes_subset_in_given_order(tmp_path: Path) -> None:
    report = LoadReport()
    samples, names = load_coco(
        coco_tree(tmp_path), tmp_path / "img", classes=["dog", "person"], report=report
    )
    assert names == ("dog", "person")
    assert samples[0].labels.tolist() == [1, 0]
    assert samples[1].num_objects == 0 and report.empty_images == 1
    assert report.dropped_objects == 1 and report.dropped_by_class == {"car": 1}
    kept, _ = load_coco(coco_tree(tmp_path), tmp_path / "img", classes=["dog"], drop_empty=True)
    assert [s.image_id for s in kept] == ["1"]
    with pytest.raises(DatasetError, match="cat"):
        load_coco(coco_tree(tmp_path), tmp_path / "img", classes=["cat"])


def _ann(**kw: Any) -> dict[str, Any]:
    return {"id": 99, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], **kw}


BAD_ANNOTATIONS = {
    "unknown image": _ann(image_id=42),
    "unknown category": _ann(category_id=2),
    "outside": _ann(bbox=[30, 1, 20, 5]),
    "zero width": _ann(bbox=[3, 1, 0, 5]),
    "negative height": _ann(bbox=[3, 10, 5, -5]),
    "short bbox": _ann(bbox=[3, 1, 5]),
    "no bbox": {"id": 99, "image_id": 1, "category_id": 1},
    "text bbox": _ann(bbox=[3, "a", 5, 5]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_ANNOTATIONS))
def test_invalid_annotation_raises_or_is_skipped(tmp_path: Path, case: str) -> None:
    base = json.loads(coco_tree(tmp_path).read_text())["annotations"]
    path = coco_tree(tmp_path, annotations=[*base, BAD_ANNOTATIONS[case]])
    with pytest.raises(DatasetError, match=r"ann\.json: annotation 99"):
        load_coco(path, tmp_path / "img")
    report = LoadReport()
    samples, _ = load_coco(path, tmp_path / "img", skip_invalid=True, report=report)
    assert [s.num_objects for s in samples] == [2, 1] and report.skipped_objects == 1


def test_missing_image_file_raises_or_is_skipped(tmp_path: Path) -> None:
    path = coco_tree(tmp_path)
    (tmp_path / "img" / "five.png").unlink()
    with pytest.raises(DatasetError, match=r"ann\.json.*five\.png"):
        load_coco(path, tmp_path / "img")
    report = LoadReport()
    samples, _ = load_coco(path, tmp_path / "img", skip_invalid=True, report=report)
    assert [s.image_id for s in samples] == ["1"] and report.skipped_images == 1
    assert report.skipped_objects == 0  # its annotations go with it


def test_within_tolerance_clipped_and_size_from_header(tmp_path: Path) -> None:
    images = [{"id": 1, "file_name": "one.png"}, {"id": 5, "file_name": "five.png"}]
    anns = [_ann(bbox=[-1, 0, 41.5, 30])]
    report = LoadReport()
    samples, _ = load_coco(
        coco_tree(tmp_path, images=images, annotations=anns), tmp_path / "img", report=report
    )
    assert (samples[0].width, samples[0].height) == (40, 30)
    np.testing.assert_array_equal(samples[0].boxes, [[0, 0, 40, 30]])
    assert report.clipped_boxes == 1


@pytest.mark.parametrize("content", ["{not json", "[]", '{"images": []}'])
def test_malformed_json(tmp_path: Path, content: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(DatasetError, match=r"broken\.json"):
        load_coco(path, tmp_path, skip_invalid=True)


def test_duplicate_categories_or_images(tmp_path: Path) -> None:
    cats = [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]
    with pytest.raises(DatasetError, match="duplicate category id"):
        load_coco(coco_tree(tmp_path, categories=cats), tmp_path / "img")
    images = [{"id": 1, "file_name": "one.png", "width": 40, "height": 30}] * 2
    with pytest.raises(DatasetError, match="duplicate image id"):
        load_coco(coco_tree(tmp_path, images=images), tmp_path / "img")
