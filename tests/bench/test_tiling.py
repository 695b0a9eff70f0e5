"""bench.tiling on the real tiny model: each mode's tile count and a positive time."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.attacks.images import jpeg
from bench.tiling import main, measure


def test_modes_count_their_tiles(tiny_onnx_path: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    data = jpeg(640, 480)
    rows = measure(tiny_onnx_path, data, ["off", "2"], runs=2)
    assert [(m, t) for m, t, _ in rows] == [("off", 0), ("2", 4)]
    assert all(p50 > 0 for _, _, p50 in rows)
    image = tmp_path / "x.jpg"
    image.write_bytes(data)
    assert main([str(image), "--model", str(tiny_onnx_path), "--modes", "off", "--runs", "1"]) == 0
    assert "tile=off: 0 tiles" in capsys.readouterr().out
