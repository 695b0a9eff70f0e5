"""PyTorch FCOS -> ONNX file: dynamic batch/height/width, fp32, project metadata embedded.

The default exporter is the TorchScript one (`dynamo=False`): in torch 2.13 it is deprecated
but still present, exports in about a second, and gives a graph whose H/W are truly dynamic
(the FPN's `F.interpolate(size=...)` becomes Shape -> Slice -> Resize(sizes=...)). The
torch.export-based exporter (`dynamo=True`, needs onnxscript) gives an equivalent graph but
takes ~20x longer; it is kept as an option for when the TorchScript exporter is removed.

`optimize=True` (the default) applies exact speed rewrites for ONNX Runtime CPU (outputs are
unchanged; bench/RESULTS.md has the measurements): the stem's ReLU -> MaxPool is exported as
MaxPool -> ReLU, and GroupNorm's affine Mul + Add becomes one BatchNormalization
(export.exporter.graph_opt.fuse_group_norm_affine). GroupNorm itself stays Reshape ->
InstanceNormalization -> Reshape: the other forms measured (ONNX GroupNormalization-21,
ReduceMean/ReduceSumSquare statistics, LayerNormalization) were no faster in fp32 and slower
in INT8.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from export.exporter.graph_opt import fuse_group_norm_affine
from export.exporter.proto_metadata import write_metadata
from export.metadata import INPUT_NAME, OUTPUT_NAMES, ModelMetadata
from model.fcos import FCOS

MIN_OPSET = 17
# Symbolic dimension names in the exported graph's inputs and outputs.
BATCH, HEIGHT, WIDTH, LOCATIONS = "batch", "height", "width", "locations"


def model_metadata(
    model: FCOS, version: str = "0.1.0", name: str | None = None, precision: str = "fp32"
) -> ModelMetadata:
    """The metadata describing `model` (its config) as written into ONNX files."""
    cfg = model.cfg
    return ModelMetadata(
        name=name or f"fcos-{cfg.name}",
        version=version,
        preset=cfg.name,
        class_names=tuple(cfg.class_names),
        strides=tuple(int(s) for s in cfg.strides),
        input_size=int(cfg.input_size),
        mean=cfg.mean,
        std=cfg.std,
        precision=precision,
    )


def example_input(input_size: int, batch: int = 2) -> torch.Tensor:
    """A non-square example (H != W, batch > 1) so no axis can be specialised or confused."""
    h = max(64, -(-input_size // 32) * 32)
    w = max(32, h * 3 // 4 // 32 * 32)
    return torch.zeros(batch, 3, h, w)


def pool_before_relu(net: FCOS) -> None:
    """Make the backbone stem compute ReLU(MaxPool(x)) instead of MaxPool(ReLU(x)), in place.

    Identical results (ReLU is monotone, so it commutes with max), and faster on ORT: the pool
    runs in fp32 ahead of the INT8 quantization point (ORT's uint8 MaxPool in NCHW is ~15x
    slower than its fp32 NCHWc one) and the ReLU touches 4x fewer elements. Relies on the stem
    being `maxpool(relu(bn1(conv1(x))))` with a `relu` used nowhere else (model.backbone).
    """
    stem = net.backbone
    if isinstance(stem.relu, nn.ReLU) and isinstance(stem.maxpool, nn.MaxPool2d):
        stem.relu, stem.maxpool = stem.maxpool, nn.ReLU()


def _export_torchscript(model: FCOS, example: torch.Tensor, path: Path, opset: int) -> None:
    dynamic_axes = {INPUT_NAME: {0: BATCH, 2: HEIGHT, 3: WIDTH}}
    dynamic_axes.update({name: {0: BATCH, 1: LOCATIONS} for name in OUTPUT_NAMES})
    with warnings.catch_warnings():
        # "legacy TorchScript-based ONNX export" and the exporter's own internal deprecations.
        warnings.simplefilter("ignore", DeprecationWarning)
        # GroupNorm's "more than one value per channel" check, which only matters in training.
        warnings.filterwarnings(
            "ignore", category=torch.jit.TracerWarning, module=r"torch\.nn\.functional"
        )
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
            export_params=True,
        )


def _export_dynamo(model: FCOS, example: torch.Tensor, path: Path, opset: int) -> None:
    dyn = torch.export.Dim.DYNAMIC
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={INPUT_NAME: {0: dyn, 2: dyn, 3: dyn}},
            external_data=False,
            optimize=True,
            verbose=False,
        )
    if program is None:  # pragma: no cover - the dynamo exporter always returns a program
        raise RuntimeError("the dynamo exporter returned no program")
    program.save(str(path))


def _set_io_shapes(proto: onnx.ModelProto, num_classes: int) -> None:
    """Give graph inputs/outputs readable symbolic dims and static last dims (C, 4, 1)."""
    graph = proto.graph
    (image_input,) = [i for i in graph.input if i.name == INPUT_NAME]
    in_dims = image_input.type.tensor_type.shape.dim
    for index, dim_name in ((0, BATCH), (2, HEIGHT), (3, WIDTH)):
        in_dims[index].dim_param = dim_name
    last = dict(zip(OUTPUT_NAMES, (num_classes, 4, 1), strict=True))
    for output in graph.output:
        shape = output.type.tensor_type.shape
        del shape.dim[:]
        shape.dim.add().dim_param = BATCH
        shape.dim.add().dim_param = LOCATIONS
        shape.dim.add().dim_value = last[output.name]
    # Intermediate shape hints may use the exporter's own symbol names; ORT re-infers them.
    del graph.value_info[:]


def export_onnx(
    model: FCOS,
    path: str | Path,
    version: str = "0.1.0",
    opset: int = MIN_OPSET,
    name: str | None = None,
    dynamo: bool = False,
    optimize: bool = True,
) -> Path:
    """Export `model.forward` to `path` (fp32) and return the path.

    Input `images` (N, 3, H, W) float32 with dynamic N, H, W; outputs `cls_logits` (N, P, C),
    `box_distances` (N, P, 4), `centerness_logits` (N, P, 1). The model's config is written
    into `metadata_props` (see export.metadata.ModelMetadata). The model is not modified.
    `optimize`: apply the exact speed rewrites described in this module's docstring.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old; this project needs opset >= {MIN_OPSET}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(model).float().cpu().eval()
    example = example_input(net.cfg.input_size)
    if optimize:
        pool_before_relu(net)
    with tempfile.TemporaryDirectory(prefix="fcos-export.") as tmp, torch.no_grad():
        raw = Path(tmp) / "raw.onnx"  # `path` is only written once the file is complete
        if dynamo:
            _export_dynamo(net, example, raw, opset)
        else:
            _export_torchscript(net, example, raw, opset)
        proto = onnx.load(str(raw))
    if optimize:
        fuse_group_norm_affine(proto)
    _set_io_shapes(proto, net.cfg.num_classes)
    write_metadata(proto, model_metadata(net, version, name, precision="fp32"))
    proto.doc_string = f"FCOS {net.cfg.name} detector, {net.cfg.num_classes} classes"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return path
