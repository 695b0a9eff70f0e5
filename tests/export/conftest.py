"""Fixtures for the torch-side export tests: a tiny FCOS whose weights are perturbed enough
that its outputs vary strongly across locations and it produces detections, so parity tests
can actually fail. torch is imported inside the fixtures only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from tests import TINY_CLASSES

if TYPE_CHECKING:
    from model.fcos import FCOS

PERTURB_STD = 0.1  # gives ~65 detections on the 160x120 test card


@pytest.fixture(scope="session")
def perturbed_tiny() -> FCOS:
    import torch

    from model import FCOS, get_preset

    torch.manual_seed(0)
    model = FCOS(get_preset("tiny", class_names=TINY_CLASSES)).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * PERTURB_STD)
    return model


@pytest.fixture(scope="session")
def perturbed_onnx(perturbed_tiny: FCOS, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from export.exporter.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("perturbed") / "tiny.onnx"
    return export_onnx(perturbed_tiny, path, version="1.2.3", name="tiny-test")


@pytest.fixture(scope="session")
def test_card() -> Image.Image:
    from export.exporter.parity import synthetic_image

    return synthetic_image(160, 120, seed=0)


@pytest.fixture(scope="session")
def calibration_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five PNGs of different sizes/aspects (letterboxed shapes differ) and one non-image."""
    root = tmp_path_factory.mktemp("calib")
    from export.exporter.parity import synthetic_image

    for i, (w, h) in enumerate([(160, 120), (120, 160), (128, 128), (200, 100), (96, 150)]):
        synthetic_image(w, h, seed=10 + i).save(root / f"img_{i:02d}.png")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="session")
def int8_path(perturbed_onnx: Path, calibration_dir: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Path:  # fmt: skip
    """`perturbed_onnx` statically quantized to INT8 (QDQ), calibrated on 4 of the PNGs."""
    from export.exporter.quantize import quantize_int8

    out = tmp_path_factory.mktemp("int8") / "tiny.int8.onnx"
    return quantize_int8(perturbed_onnx, out, calibration_dir, num_images=4)
