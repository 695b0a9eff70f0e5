"""The model repository's layout (export.repository): names, Triton's version folders, pins,
and what is skipped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from export.repository import file_identity, parse_pins, scan_folder, single_source


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_flat_files_are_named_by_their_stem(tmp_path: Path) -> None:
    touch(tmp_path / "default.onnx")
    touch(tmp_path / "birds-v2.onnx")
    touch(tmp_path / "notes.txt")
    touch(tmp_path / "default.pt")
    found = scan_folder(tmp_path)
    assert list(found) == ["birds-v2", "default"]  # sorted, other suffixes ignored
    assert found["default"].path == tmp_path / "default.onnx"
    assert found["default"].version is None


def test_hidden_and_badly_named_files_are_skipped(tmp_path: Path) -> None:
    touch(tmp_path / ".birds.onnx")  # a copy in progress, renamed into place when complete
    touch(tmp_path / "has space.onnx")
    touch(tmp_path / ("n" * 65 + ".onnx"))
    touch(tmp_path / "-dash.onnx")
    touch(tmp_path / "ok_1.2.onnx")
    assert list(scan_folder(tmp_path)) == ["ok_1.2"]


def test_triton_layout_serves_the_highest_version(tmp_path: Path) -> None:
    for v in ("1", "2", "10"):
        touch(tmp_path / "cars" / v / "model.onnx")
    touch(tmp_path / "cars" / "11" / "other.onnx")  # no model.onnx: not a version
    touch(tmp_path / "cars" / "latest" / "model.onnx")  # not a number: not a version
    (tmp_path / "pictures").mkdir()  # a folder without versions is not a model
    found = scan_folder(tmp_path)
    assert list(found) == ["cars"]
    assert found["cars"].version == "10"  # numeric order, not text order
    assert found["cars"].path == tmp_path / "cars" / "10" / "model.onnx"


def test_pins_choose_a_version_and_a_missing_pin_falls_back(tmp_path: Path) -> None:
    for v in ("1", "2"):
        touch(tmp_path / "cars" / v / "model.onnx")
    assert scan_folder(tmp_path, {"cars": "1"})["cars"].version == "1"
    assert scan_folder(tmp_path, {"cars": "7"})["cars"].version == "2"


def test_a_file_wins_over_a_folder_of_the_same_name(tmp_path: Path) -> None:
    touch(tmp_path / "cars.onnx")
    touch(tmp_path / "cars" / "1" / "model.onnx")
    found = scan_folder(tmp_path)
    assert found["cars"].path == tmp_path / "cars.onnx" and found["cars"].version is None


def test_identity_changes_with_the_file(tmp_path: Path) -> None:
    path = touch(tmp_path / "a.onnx", b"one")
    first = file_identity(path)
    os.utime(path, ns=(1, 1))
    assert file_identity(path) != first
    assert file_identity(tmp_path / "missing.onnx") is None
    assert scan_folder(tmp_path)["a"].identity == file_identity(path)


def test_single_source_and_missing_folder(tmp_path: Path) -> None:
    source = single_source(tmp_path / "models" / "default.onnx")
    assert (source.name, source.identity) == ("default", None)  # reported when it loads
    assert single_source(tmp_path / "my model (v2).int8.onnx").name == "my-model-v2-.int8"
    assert single_source(tmp_path / "_.onnx").name == "default"
    with pytest.raises(OSError):
        scan_folder(tmp_path / "nowhere")


def test_parse_pins() -> None:
    assert parse_pins("") == {}
    assert parse_pins(" cars:1, birds:12 ,") == {"cars": "1", "birds": "12"}
    for bad in ("cars", "cars:x", "c ars:1", "cars:-1"):
        with pytest.raises(ValueError, match="NAME:VERSION"):
            parse_pins(bad)
