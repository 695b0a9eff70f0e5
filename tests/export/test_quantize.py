"""Static INT8 (QDQ) quantization of the tiny model, calibrated on a few generated PNGs.

Tolerance (loose: INT8 of a randomly perturbed model, 4 calibration images): on an in-
distribution image, each output's RMS error is at most 15% of the fp32 output's standard
deviation, and the outputs stay strongly correlated (Pearson r >= 0.98). Measured: RMS/std
~0.05-0.06, r ~0.998.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from export.metadata import INPUT_NAME, OUTPUT_NAMES, ModelMetadata
from export.preprocess import load_image, preprocess
from export.runtime import make_session


def test_int8_file_loads_with_qdq_and_metadata(int8_path: Path, perturbed_onnx: Path) -> None:
    session = make_session(int8_path, threads=1)
    meta = ModelMetadata.from_strings(session.get_modelmeta().custom_metadata_map)
    fp32_meta = ModelMetadata.from_strings(
        make_session(perturbed_onnx, threads=1).get_modelmeta().custom_metadata_map
    )
    assert meta.precision == "int8"
    assert meta == ModelMetadata(**{**fp32_meta.__dict__, "precision": "int8"})
    proto = onnx.load(str(int8_path))
    onnx.checker.check_model(proto)
    ops = Counter(n.op_type for n in proto.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    assert int8_path.stat().st_size < perturbed_onnx.stat().st_size * 0.6  # int8 weights
    # Per-channel weights: some DequantizeLinear has a vector scale (one per output channel).
    inits = {t.name: t for t in proto.graph.initializer}
    scales = [inits[n.input[1]] for n in proto.graph.node
              if n.op_type == "DequantizeLinear" and n.input[1] in inits]  # fmt: skip
    assert any(len(s.dims) == 1 and s.dims[0] > 1 for s in scales)


def test_int8_outputs_close_to_fp32(int8_path: Path, perturbed_onnx: Path,
                                    calibration_dir: Path) -> None:  # fmt: skip
    image = load_image((calibration_dir / "img_00.png").read_bytes())
    x, _ = preprocess(image, 128)
    ref = make_session(perturbed_onnx, threads=1).run(list(OUTPUT_NAMES), {INPUT_NAME: x})
    got = make_session(int8_path, threads=1).run(list(OUTPUT_NAMES), {INPUT_NAME: x})
    for name, r, g in zip(OUTPUT_NAMES, ref, got, strict=True):
        assert g.shape == r.shape
        rms = float(np.sqrt(np.mean((g - r) ** 2)))
        assert rms <= 0.15 * float(r.std()), f"{name}: rms error {rms} vs std {r.std()}"
        assert np.corrcoef(r.ravel(), g.ravel())[0, 1] >= 0.98, name
    assert not np.allclose(ref[0], got[0], atol=1e-6), "int8 output identical to fp32?"


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_methods_with_mixed_shapes(
    perturbed_onnx: Path, calibration_dir: Path, tmp_path: Path, method: str
) -> None:
    from export.exporter.quantize import quantize_int8

    out = quantize_int8(perturbed_onnx, tmp_path / "q.onnx", calibration_dir, 3, method)
    meta = make_session(out, threads=1).get_modelmeta().custom_metadata_map
    assert meta["precision"] == "int8"


def test_quantization_is_deterministic(perturbed_onnx: Path, calibration_dir: Path,
                                       tmp_path: Path) -> None:  # fmt: skip
    from export.exporter.quantize import quantize_int8

    a = quantize_int8(perturbed_onnx, tmp_path / "a.onnx", calibration_dir, 2)
    b = quantize_int8(perturbed_onnx, tmp_path / "b.onnx", calibration_dir, 2)
    assert a.read_bytes() == b.read_bytes()


def test_calibration_files_sorted_first_n(calibration_dir: Path) -> None:
    from export.exporter.quantize import calibration_files

    files = calibration_files(calibration_dir, 3)
    assert [f.name for f in files] == ["img_00.png", "img_01.png", "img_02.png"]
    assert len(calibration_files(calibration_dir, 100)) == 5  # notes.txt is not an image


def test_calibration_errors(perturbed_onnx: Path, tmp_path: Path) -> None:
    from export.exporter.quantize import calibration_files, quantize_int8

    with pytest.raises(FileNotFoundError, match="not found"):
        calibration_files(tmp_path / "missing", 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        calibration_files(tmp_path / "empty", 4)
    with pytest.raises(ValueError, match="method"):
        quantize_int8(perturbed_onnx, tmp_path / "q.onnx", tmp_path / "empty", 4, "median")
