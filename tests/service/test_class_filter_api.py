"""`classes=` on /detect: names -> the filter in export.postprocess (before NMS and
max_detections), 422 listing the valid names, reflected in the annotated image."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from bench.attacks.images import jpeg
from service.class_filter import parse_classes
from service.errors import InvalidParameterError
from tests import TINY_CLASSES

ALL = "/detect?score_threshold=0&max_detections=1000"  # the tiny model: hundreds of weak boxes


def detections(client: TestClient, url: str, body: bytes) -> list[dict[str, Any]]:
    r = client.post(url, content=body, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200, r.text
    dets: list[dict[str, Any]] = r.json()["detections"]
    return dets


def test_parse_classes() -> None:
    names = ("cat", "dog", "person")
    assert parse_classes(None, names) is None
    assert parse_classes(["", " , "], names) is None
    assert parse_classes("person,cat", names) == (0, 2)
    assert parse_classes(["Dog", "dog,person"], names) == (1, 2)
    with pytest.raises(InvalidParameterError, match=r"'car'.*valid: cat, dog, person"):
        parse_classes(["person,car"], names)


def test_filter_keeps_exactly_the_unfiltered_boxes_of_those_classes(client: TestClient) -> None:
    body = jpeg(320, 240)
    every = detections(client, ALL, body)
    assert {d["label"] for d in every} == set(TINY_CLASSES)
    for query, wanted in [("dog", {"dog"}), ("person,cat", {"person", "cat"})]:
        got = detections(client, f"{ALL}&classes={query}", body)
        assert got == [d for d in every if d["label"] in wanted]
    repeated = detections(client, f"{ALL}&classes=person&classes=CAT", body)
    assert repeated == detections(client, f"{ALL}&classes=cat,person", body)


def test_filter_is_applied_before_max_detections(client: TestClient) -> None:
    body = jpeg(320, 240)
    every = detections(client, "/detect?score_threshold=0&max_detections=5", body)
    dogs = detections(client, "/detect?score_threshold=0&max_detections=5&classes=dog", body)
    assert len(dogs) == 5 and {d["label"] for d in dogs} == {"dog"}
    assert [d["label"] for d in every] != ["dog"] * 5  # not just a filter of the top 5


def test_unknown_class_is_422_listing_the_valid_ones(client: TestClient) -> None:
    r = client.post("/detect?classes=dog,unicorn", content=jpeg())
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_parameter"
    assert "'unicorn'" in err["message"] and "valid: cat, dog, person" in err["message"]


def test_annotated_image_draws_only_the_filtered_boxes(client: TestClient) -> None:
    body = jpeg(320, 240)
    n_dogs = len(detections(client, f"{ALL}&classes=dog", body))
    r = client.post(f"{ALL}&classes=dog&annotate=true", content=body)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert int(r.headers["x-detections"]) == n_dogs > 0
