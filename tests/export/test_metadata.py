"""ModelMetadata.from_strings checks the schema: a file with odd metadata is refused with one
clear message (naming the field, never quoting a huge value) before anything serves from it."""

from __future__ import annotations

import json

import pytest

from export.errors import ModelMetadataError
from export.metadata import MAX_CLASSES, ModelMetadata

GOOD = ModelMetadata(
    name="fcos-tiny", version="0.1.0", preset="tiny", class_names=("cat", "dog", "person"),
    strides=(8, 16, 32, 64, 128), input_size=128, mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225), precision="fp32",
)  # fmt: skip


def strings(**changes: str) -> dict[str, str]:
    return {**GOOD.to_strings(), **changes}


def test_round_trip_and_precision_default() -> None:
    assert ModelMetadata.from_strings(strings()) == GOOD
    old = strings()
    del old["precision"]  # files written before precision existed
    assert ModelMetadata.from_strings(old).precision == "fp32"
    assert ModelMetadata.from_strings(strings(precision="int8")).precision == "int8"


BIG = "x" * 1_000_000


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"name": ""}, "name must be a string of 1 to 128"),
        ({"name": BIG}, "name must be a string of 1 to 128"),
        ({"name": "a\nb"}, "printable"),
        ({"version": "v" * 65}, "version must be a string of 1 to 64"),
        ({"preset": "\x00"}, "preset must be"),
        ({"class_names": "[1, 2]"}, "class_names[0] must be a string"),
        ({"class_names": '["cat", ""]'}, "class_names[1] must be a string"),
        ({"class_names": '["cat", "cat"]'}, "must not repeat"),
        ({"class_names": "[]"}, "class_names must list 1 to"),
        ({"class_names": json.dumps([f"c{i}" for i in range(MAX_CLASSES + 1)])}, "list 1 to"),
        ({"class_names": '{"a": 1}'}, "'class_names' is malformed"),
        ({"class_names": "not json"}, "'class_names' is malformed"),
        ({"class_names": json.dumps(["c" * 65])}, "class_names[0] must be a string of 1 to 64"),
        ({"strides": "[8, 0]"}, "strides must be"),
        ({"strides": "[8.5]"}, "strides must be"),
        ({"strides": "[]"}, "strides must be"),
        ({"strides": '["8"]'}, "strides must be"),
        ({"input_size": "16"}, "input_size must be an integer in 32..4096"),
        ({"input_size": "100000"}, "input_size must be"),
        ({"input_size": "1" + "0" * 5000}, "'input_size' is malformed"),
        ({"mean": "[0.5, 0.5]"}, "mean must be 3 finite numbers"),
        ({"mean": "[NaN, 0, 0]"}, "mean must be 3 finite numbers"),
        ({"std": "[0, 0, 0]"}, "std must be 3 numbers > 0"),
        ({"std": "[-1, 1, 1]"}, "std must be 3 numbers > 0"),
        ({"std": "[Infinity, 1, 1]"}, "std must be 3 finite"),
        ({"precision": "fp64"}, "precision must be one of fp32, int8"),
    ],
)
def test_off_schema_metadata_is_refused(changes: dict[str, str], says: str) -> None:
    with pytest.raises(ModelMetadataError) as info:
        ModelMetadata.from_strings(strings(**changes))
    message = str(info.value)
    assert says in message, message
    assert len(message) < 200  # never the value itself


def test_missing_key_is_named() -> None:
    d = strings()
    del d["class_names"]
    with pytest.raises(ModelMetadataError, match="lacks the key 'class_names'"):
        ModelMetadata.from_strings(d)
