"""The exact speed rewrites (export.exporter.graph_opt, pool_before_relu) and the INT8 layer
choices.

The optimised graph must compute what the plain export computes (fp32: to float rounding of
a reordered Mul + Add, in practice bit-identical on ORT), and the INT8 file must keep the
stem and prediction convs in fp32 unless asked otherwise.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest

from export.metadata import INPUT_NAME, OUTPUT_NAMES
from export.runtime import make_session

if TYPE_CHECKING:
    from model.fcos import FCOS


def _ops(path: Path) -> Counter[str]:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _num_group_norms(model: FCOS) -> int:
    """GroupNorm applications in one forward: the shared head's run once per level."""
    import torch

    def count(module: torch.nn.Module) -> int:
        return sum(isinstance(m, torch.nn.GroupNorm) for m in module.modules())

    return count(model.backbone) + count(model.fpn) + count(model.head) * len(model.cfg.strides)


@pytest.fixture(scope="module")
def plain_onnx(perturbed_tiny: FCOS, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from export.exporter.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("plain") / "plain.onnx"
    return export_onnx(perturbed_tiny, path, optimize=False)


def test_optimised_graph_shape(perturbed_tiny: FCOS, perturbed_onnx: Path,
                               plain_onnx: Path) -> None:  # fmt: skip
    fast, plain = _ops(perturbed_onnx), _ops(plain_onnx)
    n_gn = _num_group_norms(perturbed_tiny)
    assert fast["InstanceNormalization"] == plain["InstanceNormalization"] == n_gn
    assert fast["BatchNormalization"] == n_gn and plain["BatchNormalization"] == 0
    assert plain["Mul"] - fast["Mul"] == n_gn and plain["Add"] - fast["Add"] == n_gn
    # The stem pool now reads the normalised tensor, and the ReLU reads the pool.
    graph = onnx.load(str(perturbed_onnx)).graph
    producers = {o: n for n in graph.node for o in n.output}
    (pool,) = [n for n in graph.node if n.op_type == "MaxPool"]
    (relu,) = [n for n in graph.node if n.op_type == "Relu" and n.input[0] == pool.output[0]]
    assert producers[pool.input[0]].op_type == "BatchNormalization" and relu


def test_optimised_graph_computes_the_same(perturbed_onnx: Path, plain_onnx: Path) -> None:
    x = np.random.default_rng(7).standard_normal((2, 3, 96, 128)).astype(np.float32)
    fast = make_session(perturbed_onnx, threads=1).run(list(OUTPUT_NAMES), {INPUT_NAME: x})
    plain = make_session(plain_onnx, threads=1).run(list(OUTPUT_NAMES), {INPUT_NAME: x})
    for name, f, p in zip(OUTPUT_NAMES, fast, plain, strict=True):
        np.testing.assert_allclose(f, p, rtol=0, atol=1e-5, err_msg=name)


def test_fp32_conv_names_found_from_structure(perturbed_onnx: Path) -> None:
    from export.exporter.quantize import fp32_conv_names

    proto = onnx.load(str(perturbed_onnx))
    stem = fp32_conv_names(proto, ["stem"])
    preds = fp32_conv_names(proto, ["predictions"])
    assert stem == ["/backbone/conv1/Conv"]
    assert len(preds) == 3 * 5  # cls_logits, bbox_pred, centerness on 5 levels
    assert all(any(k in n for k in ("cls_logits", "bbox_pred", "centerness")) for n in preds)
    with pytest.raises(ValueError, match="groups"):
        fp32_conv_names(proto, ["head"])


@pytest.mark.parametrize("keep", [("stem", "predictions"), ()], ids=["default", "all-int8"])
def test_int8_keeps_chosen_convs_fp32(perturbed_onnx: Path, calibration_dir: Path,
                                      tmp_path: Path, keep: tuple[str, ...]) -> None:  # fmt: skip
    from export.exporter.quantize import quantize_int8

    out = quantize_int8(perturbed_onnx, tmp_path / "q.onnx", calibration_dir, 2, keep_fp32=keep)
    graph = onnx.load(str(out)).graph
    producers = {o: n for n in graph.node for o in n.output}
    float_convs = [
        n.name
        for n in graph.node
        if n.op_type == "Conv"
        and getattr(producers.get(n.input[1]), "op_type", "") != "DequantizeLinear"
    ]
    assert len(float_convs) == (16 if keep else 0)
    # No Shape node makes ORT dequantize a tensor just to read its shape.
    assert not [
        n
        for n in graph.node
        if n.op_type == "Shape"
        and getattr(producers.get(n.input[0]), "op_type", "") == "DequantizeLinear"
    ]
    x = np.random.default_rng(1).standard_normal((1, 3, 96, 128)).astype(np.float32)
    assert make_session(out, threads=1).run(None, {INPUT_NAME: x})[0].shape[0] == 1
