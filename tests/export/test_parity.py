"""The parity report: passes on the exported model, and flags a model that differs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from export.postprocess import Detections

if TYPE_CHECKING:
    from model.fcos import FCOS


def test_report_table_and_ok(perturbed_tiny: FCOS, perturbed_onnx: Path,
                             test_card: Image.Image) -> None:  # fmt: skip
    from export.exporter.parity import parity_report

    report = parity_report(perturbed_tiny, perturbed_onnx, test_card, sizes=(128, 64))
    text = str(report)
    assert report.ok, text
    assert "pytorch vs onnxruntime" in text and "96x128" in text and "64x64" in text
    assert text.splitlines()[-1] == "overall: ok"


def test_report_flags_a_different_model(perturbed_tiny: FCOS, perturbed_onnx: Path,
                                        test_card: Image.Image) -> None:  # fmt: skip
    import copy

    import torch

    from export.exporter.parity import parity_report

    other = copy.deepcopy(perturbed_tiny)
    with torch.no_grad():
        other.head.cls_logits.bias.add_(0.5)  # shifts every class logit by 0.5
    report = parity_report(other, perturbed_onnx, test_card, sizes=(128,))
    assert not report.ok
    assert abs(report.rows[0].max_abs["cls_logits"] - 0.5) < 1e-3
    assert report.rows[0].max_abs["box_distances"] < 1e-3
    assert "MISMATCH" in str(report)


def test_match_detections() -> None:
    from export.exporter.parity import Tolerance, match_detections

    ref = Detections(np.array([[0, 0, 10, 10], [5, 5, 20, 20]], np.float32),
                     np.array([0.9, 0.8], np.float32), np.array([0, 1]))  # fmt: skip
    swapped = Detections(ref.boxes[::-1] + 0.1, ref.scores[::-1], ref.class_ids[::-1])
    m = match_detections(ref, swapped)
    assert (m.ref_count, m.cand_count, m.matched) == (2, 2, 2)
    assert abs(m.max_box_diff - 0.1) < 1e-5 and m.ok(Tolerance())
    wrong_class = Detections(ref.boxes, ref.scores, np.array([0, 2]))
    assert not match_detections(ref, wrong_class).ok(Tolerance())
    assert not match_detections(ref, Detections.empty()).ok(Tolerance())
    shifted = Detections(ref.boxes + 1.0, ref.scores, ref.class_ids)  # 1 px > 0.5 px allowed
    assert match_detections(ref, shifted).matched == 2
    assert not match_detections(ref, shifted).ok(Tolerance())
