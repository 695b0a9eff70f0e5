"""export_onnx: a valid, small, truly dynamic graph that reproduces PyTorch, with metadata.

Tolerances (fp32 ORT vs PyTorch, perturbed tiny model, logits of magnitude ~1-10, box
distances up to ~150 px): logits atol 1e-4; box distances atol 1e-3 px; detections: same
count, same classes, boxes within 1e-2 px, scores within 1e-4.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest

from export.metadata import INPUT_NAME, OUTPUT_NAMES, ModelMetadata
from export.postprocess import level_sizes
from export.runtime import make_session

if TYPE_CHECKING:
    import torch

    from model.fcos import FCOS

ATOL = {"cls_logits": 1e-4, "box_distances": 1e-3, "centerness_logits": 1e-4}


def _torch_outputs(model: FCOS, x: np.ndarray) -> list[np.ndarray]:
    from export.exporter.parity import torch_runner

    return list(torch_runner(model)(x))


def test_checker_opset_and_io(perturbed_onnx: Path) -> None:
    proto = onnx.load(str(perturbed_onnx))
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*proto.graph.input, *proto.graph.output]
    }
    assert dims == {
        INPUT_NAME: ["batch", 3, "height", "width"],
        "cls_logits": ["batch", "locations", 3],
        "box_distances": ["batch", "locations", 4],
        "centerness_logits": ["batch", "locations", 1],
    }
    assert [o.name for o in proto.graph.output] == list(OUTPUT_NAMES)


def test_file_is_small_no_duplicated_weights(perturbed_tiny: FCOS, perturbed_onnx: Path) -> None:
    from model import count_parameters

    param_bytes = 4 * count_parameters(perturbed_tiny)
    proto = onnx.load(str(perturbed_onnx))
    init_bytes = sum(onnx.numpy_helper.to_array(t).nbytes for t in proto.graph.initializer)
    assert init_bytes <= param_bytes * 1.01  # every weight stored once
    assert perturbed_onnx.stat().st_size < param_bytes * 1.05 + 64_000
    ops = Counter(n.op_type for n in proto.graph.node)
    # The shared head runs once per level: its convs appear 5 times, with shared weights.
    body = _num_convs(perturbed_tiny.backbone) + _num_convs(perturbed_tiny.fpn)
    head = _num_convs(perturbed_tiny.head)
    assert ops["Conv"] == body + head * len(perturbed_tiny.cfg.strides)
    assert ops["Resize"] == 2  # the FPN's two nearest upsamplings


def _num_convs(module: torch.nn.Module) -> int:
    import torch

    return sum(isinstance(m, torch.nn.Conv2d) for m in module.modules())


def test_metadata_round_trips(perturbed_tiny: FCOS, perturbed_onnx: Path) -> None:
    meta_map = make_session(perturbed_onnx, threads=1).get_modelmeta().custom_metadata_map
    meta = ModelMetadata.from_strings(meta_map)
    cfg = perturbed_tiny.cfg
    assert meta == ModelMetadata(
        name="tiny-test", version="1.2.3", preset="tiny", class_names=("cat", "dog", "person"),
        strides=(8, 16, 32, 64, 128), input_size=128, mean=cfg.mean, std=cfg.std,
        precision="fp32",
    )  # fmt: skip


@pytest.mark.parametrize(
    "shape",
    [(1, 3, 128, 96), (1, 3, 96, 160), (2, 3, 96, 128), (1, 3, 72, 104)],
    ids=["128x96", "96x160", "batch2", "not-multiple-of-32"],
)
def test_ort_matches_pytorch(perturbed_tiny: FCOS, perturbed_onnx: Path, shape: tuple) -> None:
    """Dynamic N, H and W; 72x104 makes the FPN upsample 5->9 and 3->5 (not a plain 2x)."""
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    got = make_session(perturbed_onnx, threads=1).run(list(OUTPUT_NAMES), {INPUT_NAME: x})
    ref = _torch_outputs(perturbed_tiny, x)
    p = sum(h * w for h, w in level_sizes(shape[2], shape[3], (8, 16, 32, 64, 128)))
    for name, g, r, k in zip(OUTPUT_NAMES, got, ref, (3, 4, 1), strict=True):
        assert g.shape == r.shape == (shape[0], p, k), name
        assert float(np.std(r)) > 0.05, f"{name}: reference output is nearly constant"
        np.testing.assert_allclose(g, r, rtol=0, atol=ATOL[name], err_msg=name)
    if shape[0] == 2:  # batch elements are independent: same as running them one at a time
        single = make_session(perturbed_onnx, threads=1).run(None, {INPUT_NAME: x[1:]})
        np.testing.assert_allclose(single[0], got[0][1:], rtol=0, atol=1e-5)


def test_same_detections_after_postprocess(perturbed_tiny: FCOS, perturbed_onnx: Path,
                                           test_card: object) -> None:  # fmt: skip
    from export.exporter.parity import Tolerance, parity_report

    tol = Tolerance(cls_logits=1e-4, box_distances=1e-3, centerness_logits=1e-4,
                    det_box=1e-2, det_score=1e-4)  # fmt: skip
    report = parity_report(perturbed_tiny, perturbed_onnx, test_card, sizes=(128, 96), tol=tol)
    assert report.ok, report.format()
    assert [r.input_hw for r in report.rows] == [(96, 128), (96, 96)]
    for row in report.rows:
        assert row.detections.ref_count >= 10, "the test model should produce detections"
        assert row.detections.matched == row.detections.ref_count


@pytest.mark.slow  # the torch.export-based exporter takes ~20 s of CPU for the tiny model
def test_dynamo_exporter_is_equivalent(perturbed_tiny: FCOS, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    from export.exporter.onnx_export import export_onnx

    path = export_onnx(perturbed_tiny, tmp_path / "dynamo.onnx", dynamo=True)
    x = np.random.default_rng(3).standard_normal((2, 3, 96, 160)).astype(np.float32)
    got = make_session(path, threads=1).run(list(OUTPUT_NAMES), {INPUT_NAME: x})
    for name, g, r in zip(OUTPUT_NAMES, got, _torch_outputs(perturbed_tiny, x), strict=True):
        np.testing.assert_allclose(g, r, rtol=0, atol=ATOL[name], err_msg=name)
    meta_map = make_session(path, threads=1).get_modelmeta().custom_metadata_map
    assert ModelMetadata.from_strings(meta_map).preset == "tiny"


def test_rejects_old_opset(perturbed_tiny: FCOS, tmp_path: Path) -> None:
    from export.exporter.onnx_export import export_onnx

    with pytest.raises(ValueError, match="opset"):
        export_onnx(perturbed_tiny, tmp_path / "old.onnx", opset=13)
    assert not (tmp_path / "old.onnx").exists()


def test_model_is_left_unchanged(perturbed_tiny: FCOS, tmp_path: Path) -> None:
    from export.exporter.onnx_export import export_onnx

    before = {k: v.clone() for k, v in perturbed_tiny.state_dict().items()}
    perturbed_tiny.train()
    try:
        export_onnx(perturbed_tiny, tmp_path / "sub" / "m.onnx")
        assert perturbed_tiny.training
    finally:
        perturbed_tiny.eval()
    after = perturbed_tiny.state_dict()
    assert all(bool((before[k] == after[k]).all()) for k in before)
