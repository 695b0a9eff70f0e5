"""export.model_check: the child-process check under a time and memory budget, and the words
clients get for each kind of failure (the server-level behaviour: tests/service/
test_model_files.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from export.errors import ModelMetadataError
from export.model_check import ModelCheck, ModelRefusedError, describe_failure


def test_a_good_model_passes(tiny_onnx_path: Path) -> None:
    peak = ModelCheck(60, 2**30).run(tiny_onnx_path, "onnxruntime", 1)
    assert 0 <= peak < 2**30


def test_cancel_kills_a_running_check_and_refuses_later_ones(
    tiny_onnx_path: Path, tmp_path: Path
) -> None:
    pytest.importorskip("onnx", reason="building the hostile file needs the onnx package")
    from bench.attacks.hostile_models import endless_loop

    path = endless_loop(tiny_onnx_path, tmp_path / "loop.onnx")
    check = ModelCheck(600, 2**30)
    errors: list[ModelRefusedError] = []

    def run() -> None:
        try:
            check.run(path, "onnxruntime", 1)
        except ModelRefusedError as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    check.cancel()
    worker.join(timeout=10)
    assert time.monotonic() - t0 < 5 and errors[0].public == "the service is shutting down"
    with pytest.raises(ModelRefusedError, match="shutting down"):
        check.run(tiny_onnx_path, "onnxruntime", 1)


def test_failures_in_our_words() -> None:
    assert describe_failure(FileNotFoundError("x"))[0] == "not found"
    assert describe_failure(RuntimeError("Symlink loop"))[0] == "not a loadable ONNX model"
    assert describe_failure(OSError(40, "Too many levels"))[0] == "not a readable file"
    public, detail = describe_failure(ModelMetadataError("std must be 3 numbers > 0"))
    assert public == "metadata invalid: std must be 3 numbers > 0"
    assert detail == "ModelMetadataError: std must be 3 numbers > 0"  # the log's version
    assert describe_failure(ModelRefusedError("load took longer than 5 s", "killed")) == (
        "load took longer than 5 s", "killed")  # fmt: skip
