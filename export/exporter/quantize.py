"""Static INT8 quantization (QDQ) of an exported fp32 FCOS model with ONNX Runtime.

Activations QUInt8 (per tensor), weights QInt8 per output channel, Conv ops only. Calibration
feeds real images through the same letterbox pre-processing as the service, one image at a
time (padded shapes may differ between images). Deterministic: sorted files, first N.

By default two groups of convs stay fp32 (`keep_fp32`), both measured faster that way and
more accurate: the stem (3 input channels: ORT's int8 conv is ~6x slower there than its fp32
NCHWc conv, and its 4M-element output would need a full dequantization) and the prediction
convs (1, 4 and C output channels: int8 GEMMs that narrow are slower than fp32 ones, and the
outputs keep full precision). After quantization, Shape nodes read the quantized tensors
(export.exporter.graph_opt.shapes_from_quantized) so ORT does not dequantize a tensor for its shape.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from export.exporter.graph_opt import shapes_from_quantized
from export.exporter.proto_metadata import read_metadata, write_metadata
from export.metadata import INPUT_NAME, ModelMetadata
from export.preprocess import load_image, preprocess

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
CALIBRATION_METHODS: dict[str, CalibrationMethod] = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
FP32_GROUPS = ("stem", "predictions")


def fp32_conv_names(proto: onnx.ModelProto, groups: Sequence[str] = FP32_GROUPS) -> list[str]:
    """Names of the Conv nodes to leave in fp32, found from the graph structure: "stem" =
    convs reading a graph input; "predictions" = convs from which a graph output is reached
    without passing through another conv."""
    unknown = set(groups) - set(FP32_GROUPS)
    if unknown:
        raise ValueError(f"unknown fp32 layer groups {sorted(unknown)}; use {FP32_GROUPS}")
    graph = proto.graph
    inputs = {i.name for i in graph.input}
    names: list[str] = []
    if "stem" in groups:
        names += [n.name for n in graph.node if n.op_type == "Conv" and n.input[0] in inputs]
    if "predictions" in groups:
        producers = {out: node for node in graph.node for out in node.output}
        seen: set[str] = set()
        stack = [o.name for o in graph.output]
        while stack:
            node = producers.get(stack.pop())
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type == "Conv":
                names.append(node.name)
            else:
                stack += [i for i in node.input if i]
    if not all(names) or len(set(names)) != len(names):
        raise ValueError("Conv nodes need distinct, non-empty names to be kept in fp32")
    return names


def calibration_files(directory: str | Path, num_images: int) -> list[Path]:
    """The first `num_images` image files of `directory` (recursive), sorted by path."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"calibration directory not found: {root}")
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {root}")
    return files[:num_images]


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds `{images: (1, 3, H, W)}` batches, pre-processed with the model's own metadata."""

    def __init__(self, files: list[Path], meta: ModelMetadata, square: bool = False) -> None:
        """`square`: place every tensor top-left on one zero (= mean) canvas of
        input_size x input_size (rounded up to 32). ORT's histogram calibrators (entropy,
        percentile) stack the tensors of all batches and so need a single shape."""
        self.files = list(files)
        self.meta = meta
        self.square = square
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    def _tensors(self) -> Iterator[dict[str, np.ndarray]]:
        side = -(-self.meta.input_size // 32) * 32
        for path in self.files:
            image = load_image(path.read_bytes(), max_pixels=None, draft_size=self.meta.input_size)
            tensor, _ = preprocess(image, self.meta.input_size, self.meta.mean, self.meta.std)
            if self.square:
                canvas = np.zeros((1, 3, side, side), dtype=np.float32)
                canvas[:, :, : tensor.shape[2], : tensor.shape[3]] = tensor
                tensor = canvas
            yield {INPUT_NAME: tensor}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = self._tensors()
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration_dir: str | Path,
    num_images: int = 64,
    method: str = "minmax",
    preprocess_model: bool = True,
    keep_fp32: Sequence[str] = FP32_GROUPS,
) -> Path:
    """Write an INT8 QDQ copy of `fp32_path` to `out_path`; metadata copied, precision=int8.

    `method`: "minmax" | "entropy" | "percentile" (ORT calibration methods).
    `preprocess_model`: run ORT's quant_pre_process (graph optimisation + ONNX shape
    inference) first, as ORT recommends; it gives a slightly smaller file, same accuracy.
    `keep_fp32`: groups of convs left unquantized (see fp32_conv_names); () quantizes all.
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(
            f"unknown calibration method {method!r}; use {sorted(CALIBRATION_METHODS)}"
        )
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if not fp32_path.is_file():
        raise FileNotFoundError(f"fp32 model not found: {fp32_path}")
    meta = read_metadata(onnx.load(str(fp32_path), load_external_data=False))
    files = calibration_files(calibration_dir, num_images)
    reader = ImageCalibrationReader(files, meta, square=method != "minmax")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fcos-quant.") as tmp:
        source, quantized = fp32_path, Path(tmp) / "int8.onnx"
        if preprocess_model:
            # ONNX shape inference is enough here (symbolic inference targets transformers).
            source = Path(tmp) / "preprocessed.onnx"
            quant_pre_process(str(fp32_path), str(source), skip_symbolic_shape=True)
        excluded = fp32_conv_names(onnx.load(str(source)), keep_fp32) if keep_fp32 else []
        quantize_static(
            str(source),
            str(quantized),
            calibration_data_reader=reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CALIBRATION_METHODS[method],
            nodes_to_exclude=excluded,
        )
        proto = onnx.load(str(quantized))
    shapes_from_quantized(proto)
    write_metadata(proto, dataclasses.replace(meta, precision="int8"))
    onnx.save(proto, str(out_path))  # `out_path` is only written once the file is complete
    return out_path
