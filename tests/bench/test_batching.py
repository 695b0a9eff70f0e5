"""bench.batching: the padded batch, and a reduced run on the tiny model (both levels)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.batching import load_images, main, padded_batch


def test_padded_batch_places_each_tensor_top_left() -> None:
    a = np.ones((1, 3, 2, 4), np.float32)
    b = np.full((1, 3, 3, 2), 2.0, np.float32)
    out = padded_batch([a, b])
    assert out.shape == (2, 3, 3, 4)
    np.testing.assert_array_equal(out[0, :, :2, :4], 1.0)
    np.testing.assert_array_equal(out[0, :, 2:, :], 0.0)
    np.testing.assert_array_equal(out[1, :, :3, :2], 2.0)
    np.testing.assert_array_equal(out[1, :, :, 2:], 0.0)


def test_synthetic_images_have_mixed_shapes() -> None:
    images, origin = load_images(None, 3)
    assert len(images) == 3 and "synthetic" in origin
    assert all(im[:2] == b"\xff\xd8" for im in images)


@pytest.mark.slow
def test_reduced_run(tiny_onnx_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "batching.json"
    argv = ["--model", str(tiny_onnx_path), "--sizes", "1,3", "--rounds", "2", "--threads", "1",
            "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert [r["images"] for r in result["model_level"]] == [1, 3]
    assert result["model_level"][1]["batched_shape"][0] == 3
    assert [r["images"] for r in result["http"]] == [1, 3]
    for row in result["http"]:
        assert row["detect_calls"]["rounds"] == 2 and row["batch_over_calls"] > 0
