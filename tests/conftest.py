"""Shared fixtures. torch and model/ are imported lazily inside fixtures, so tests that do not
use them (the service tests, the NumPy-side export tests) never import torch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import TINY_CLASSES


@pytest.fixture(scope="session")
def tiny_onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `tiny` preset (classes cat, dog, person; input size 128), torch seed 0, default
    initialisation, exported once per session with export.exporter.onnx_export.export_onnx (fp32).

    With the default init the class logits sit near the prior (-4.6): few or no detections.
    """
    import torch

    from export.exporter.onnx_export import export_onnx
    from model import FCOS, get_preset

    torch.manual_seed(0)
    model = FCOS(get_preset("tiny", class_names=TINY_CLASSES))
    # named as its metadata: served alone, the repository calls it "fcos-tiny" too
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "fcos-tiny.onnx")
