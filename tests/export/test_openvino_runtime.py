"""OpenVINO backend (export.openvino_runtime) against ONNX Runtime on real small exported
models: the perturbed tiny FCOS (fp32) and its INT8 (QDQ) quantization.

Tolerances (raw outputs on the same letterboxed tensor; final detections of `detect_image` on
the test card, matched one-to-one by class and IoU), with what was measured:
- fp32 model, "f32" hint: max |diff| <= 1e-3 (class and centre-ness logits), 1e-2 px (box
  distances), the exporter's torch-vs-ONNX tolerance (measured <= 1e-4); every detection
  matched at IoU >= 0.99, scores within 1e-3 (measured: all, 0).
- fp32 model, "bf16" hint (8-bit mantissa): RMS error <= 5% of each output's std, Pearson
  r >= 0.999 (measured <= 1.6%, >= 0.9998); >= 90% matched at IoU >= 0.8, scores within 0.02
  (measured 63/65 at IoU 0.7, 61/65 at 0.9; 0.005).
- INT8 model, either hint: OpenVINO and ONNX Runtime run the quantized ops with their own
  kernels and requantization, so it is held to the INT8-vs-fp32 bounds of test_quantize: RMS
  <= 15% of std, r >= 0.99 (measured <= 7.5%, >= 0.997); >= 80% matched at IoU >= 0.5, scores
  within 0.05 (measured 57/63 at IoU 0.7; 0.02). Its accuracy is judged by mAP
  (`python -m training.evaluate --backend openvino`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("openvino")

from export import backends
from export.boxes import box_iou
from export.metadata import INPUT_NAME, OUTPUT_NAMES, ModelMetadata
from export.openvino_runtime import OpenVinoDetector, metadata_strings
from export.postprocess import Detections, PostprocessConfig
from export.preprocess import preprocess
from export.runtime import OnnxDetector, make_session

REPO = Path(__file__).resolve().parents[2]

CFG = PostprocessConfig()  # candidate threshold 0.05: many detections to compare


@dataclass(frozen=True)
class Tol:
    max_abs: dict[str, float] | None  # per output; None: judged by RMS and correlation
    rms_of_std: float
    min_r: float
    min_iou: float  # detections: one-to-one pairs of the same class with at least this IoU
    matched_share: float  # pairs >= this share of the larger detection count
    score: float  # max |score diff| over the pairs


EXACT = Tol(
    max_abs={"cls_logits": 1e-3, "box_distances": 1e-2, "centerness_logits": 1e-3},
    rms_of_std=0.0,
    min_r=1.0,
    min_iou=0.99,
    matched_share=1.0,
    score=1e-3,
)
BF16 = Tol(max_abs=None, rms_of_std=0.05, min_r=0.999, min_iou=0.8, matched_share=0.9, score=0.02)
INT8 = Tol(max_abs=None, rms_of_std=0.15, min_r=0.99, min_iou=0.5, matched_share=0.8, score=0.05)


@pytest.fixture(scope="module")
def tensor(test_card: Image.Image) -> np.ndarray:
    x, _ = preprocess(test_card, 128)  # (1, 3, 96, 128)
    return x


def assert_raw_close(ref: Sequence[np.ndarray], got: Sequence[np.ndarray], tol: Tol) -> None:
    for name, r, g in zip(OUTPUT_NAMES, ref, got, strict=True):
        assert g.dtype == np.float32 and g.shape == r.shape, name
        if tol.max_abs is not None:
            diff = float(np.abs(g - r).max())
            assert diff <= tol.max_abs[name], f"{name}: max |diff| {diff}"
        else:
            rms = float(np.sqrt(np.mean((g - r) ** 2)))
            assert rms <= tol.rms_of_std * float(r.std()), f"{name}: rms {rms}, std {r.std()}"
            assert np.corrcoef(r.ravel(), g.ravel())[0, 1] >= tol.min_r, name


def match_by_iou(ref: Detections, got: Detections, min_iou: float) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs (ref index, got index) of the same class with IoU >= min_iou,
    reference detections in score order, each to its best-overlapping free candidate."""
    iou = box_iou(ref.boxes, got.boxes)  # (R, G)
    iou[ref.class_ids[:, None] != got.class_ids[None, :]] = 0.0
    used = np.zeros(len(got), dtype=bool)
    pairs = []
    for i in range(len(ref)):
        row = np.where(used, 0.0, iou[i])
        j = int(np.argmax(row)) if row.size else -1
        if j >= 0 and row[j] >= min_iou:
            used[j] = True
            pairs.append((i, j))
    return pairs


def assert_detections_close(ref: Detections, got: Detections, tol: Tol) -> None:
    assert len(ref) > 10, "the test card should give many detections"
    pairs = match_by_iou(ref, got, tol.min_iou)
    assert len(pairs) >= tol.matched_share * max(len(ref), len(got)), (
        len(pairs),
        len(ref),
        len(got),
    )
    i, j = (np.array(ix, dtype=np.int64) for ix in zip(*pairs, strict=True))
    assert float(np.abs(ref.scores[i] - got.scores[j]).max()) <= tol.score


@pytest.mark.parametrize("precision", ["f32", "bf16"])
@pytest.mark.parametrize("int8", [False, True], ids=["fp32-model", "int8-model"])
def test_parity_with_onnxruntime(
    perturbed_onnx: Path,
    int8_path: Path,
    test_card: Image.Image,
    tensor: np.ndarray,
    precision: str,
    int8: bool,
) -> None:
    path = int8_path if int8 else perturbed_onnx
    ort_det = OnnxDetector(path, threads=1)
    ov_det = OpenVinoDetector(path, threads=1, precision=precision)
    tol = INT8 if int8 else EXACT if precision == "f32" else BF16
    assert_raw_close(ort_det.infer(tensor), ov_det.infer(tensor), tol)
    ref, got = ort_det.detect_image(test_card, CFG), ov_det.detect_image(test_card, CFG)
    assert (got.width, got.height) == (ref.width, ref.height) == test_card.size
    assert_detections_close(ref.detections, got.detections, tol)


def test_metadata_equals_onnxruntime(perturbed_onnx: Path, int8_path: Path) -> None:
    import openvino as ov

    for path in (perturbed_onnx, int8_path):
        ort_strings = make_session(path, threads=1).get_modelmeta().custom_metadata_map
        det = OpenVinoDetector(path, threads=1)
        assert det.backend == "openvino"
        assert det.metadata == ModelMetadata.from_strings(ort_strings)
        assert metadata_strings(ov.Core().read_model(str(path)), path) == ort_strings
    # A model whose rt_info lacks the ONNX metadata (older OpenVINO): read from the file.
    param = ov.opset13.parameter([1, 3, 8, 8], ov.Type.f32, name=INPUT_NAME)
    bare = ov.Model([ov.opset13.relu(param)], [param], "bare")
    assert metadata_strings(bare, perturbed_onnx) == dict(
        make_session(perturbed_onnx, threads=1).get_modelmeta().custom_metadata_map
    )


def test_one_compiled_model_per_shape(perturbed_onnx: Path) -> None:
    det = OpenVinoDetector(perturbed_onnx, threads=1, precision="f32")
    ort_det = OnnxDetector(perturbed_onnx, threads=1)
    rng = np.random.default_rng(0)
    shapes = [(1, 3, 96, 128), (1, 3, 128, 96), (2, 3, 96, 128), (1, 3, 96, 128)]
    seen: list[tuple[int, ...]] = []
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        assert_raw_close(ort_det.infer(x), det.infer(x), EXACT)
        if shape not in seen:
            seen.append(shape)
        assert det.compiled_shapes == seen
    key, compiled = det.compiled_model((1, 3, 96, 128))
    assert key == ("lone", (1, 3, 96, 128))
    assert det.compiled_model((1, 3, 96, 128))[1] is compiled  # reused
    assert list(compiled.input(0).get_partial_shape().to_shape()) == [1, 3, 96, 128]
    assert not det.uses_dynamic


def test_shapes_beyond_max_shapes_share_a_dynamic_model(perturbed_onnx: Path) -> None:
    det = OpenVinoDetector(perturbed_onnx, threads=1, precision="f32", max_shapes=2)
    ort_det = OnnxDetector(perturbed_onnx, threads=1)
    rng = np.random.default_rng(2)
    shapes = [(1, 3, 96, 128), (1, 3, 128, 96), (1, 3, 64, 128), (1, 3, 128, 64)]
    for shape in [*shapes, *shapes]:
        x = rng.standard_normal(shape).astype(np.float32)
        assert_raw_close(ort_det.infer(x), det.infer(x), EXACT)
    assert det.compiled_shapes == shapes[:2] and det.uses_dynamic
    key, dynamic = det.compiled_model((1, 3, 64, 128))
    assert key == ("lone", None)
    assert det.compiled_model((2, 3, 32, 32)) == (("lone", None), dynamic)
    # one request each
    assert det._local.requests.keys() == {("lone", shapes[0]), ("lone", shapes[1]), ("lone", None)}


def test_concurrent_calls_run_on_a_multi_stream_model(perturbed_onnx: Path) -> None:
    """With shared_threads, `infer_shared` (a call made while others run) uses a second model
    with threads // shared_threads streams, compiled on first use; results equal ONNX
    Runtime's as `infer`'s do. Without it, `infer_shared` is `infer`.

    Checked in a child process: with multi-stream models compiled, a later fork in the same
    process (the DataLoader workers of tests/training) left pytest to crash at exit or in a
    later OpenVINO test; the service never forks after loading a model."""
    code = ("import sys; from tests.export.test_openvino_runtime import _multi_stream_checks; "
            "_multi_stream_checks(sys.argv[1])")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code, str(perturbed_onnx)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _multi_stream_checks(perturbed_onnx: str) -> None:
    det = OpenVinoDetector(perturbed_onnx, threads=2, precision="f32", shared_threads=1)
    assert det.streams == 2 and det.shared_config is not None
    assert det.pipelines(2) == 3  # a call beyond the streams waits in OpenVINO's queue
    assert det.shared_config["NUM_STREAMS"] == 2 and det.shared_config["INFERENCE_NUM_THREADS"] == 2
    ort_det = OnnxDetector(perturbed_onnx, threads=1)
    x = np.random.default_rng(3).standard_normal((1, 3, 96, 128)).astype(np.float32)
    assert_raw_close(ort_det.infer(x), det.infer(x), EXACT)
    assert det.compiled_shapes == [(1, 3, 96, 128)] and det.shared_shapes == []
    # the first concurrent call of a shape compiles its multi-stream model
    assert_raw_close(ort_det.infer(x), det.infer_shared(x), EXACT)
    assert det.shared_shapes == [(1, 3, 96, 128)]
    key, compiled = det.compiled_model((1, 3, 96, 128), "shared")
    assert key == ("shared", (1, 3, 96, 128))
    assert compiled.get_property("NUM_STREAMS") == 2
    ready = OpenVinoDetector(perturbed_onnx, threads=2, precision="f32", shared_threads=1)
    ready.prepare_shared((1, 3, 96, 128))  # compiled now, e.g. before a timing
    assert ready.shared_shapes == [(1, 3, 96, 128)] and ready.compiled_shapes == []
    alone = OpenVinoDetector(perturbed_onnx, threads=2, precision="f32")
    assert alone.streams == 1 and alone.shared_config is None and alone.pipelines(1) == 1
    alone.infer_shared(x)
    assert alone.shared_shapes == [] and alone.compiled_shapes == [(1, 3, 96, 128)]


def test_concurrent_infer_matches_sequential(perturbed_onnx: Path) -> None:
    """4 threads, 2 shapes, 3 rounds each: every result equals the sequential one."""
    det = OpenVinoDetector(perturbed_onnx, threads=2, precision="bf16")
    rng = np.random.default_rng(1)
    inputs = [
        rng.standard_normal(s).astype(np.float32) for s in [(1, 3, 96, 128), (1, 3, 128, 96)] * 2
    ]
    expected = [det.infer(x) for x in inputs]
    results: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(inputs))

    def work(k: int) -> None:
        try:
            barrier.wait()
            for r in range(3):
                # Alternate the two shapes so each thread uses a request per shape.
                results[(k, r)] = det.infer(inputs[(k + r) % len(inputs)])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(det.compiled_shapes) == 2
    for (k, r), got in results.items():
        for e, g in zip(expected[(k + r) % len(inputs)], got, strict=True):
            np.testing.assert_array_equal(g, e)


def test_outputs_are_copies(perturbed_onnx: Path, tensor: np.ndarray) -> None:
    det = OpenVinoDetector(perturbed_onnx, threads=1, precision="f32")
    first = det.infer(tensor)
    kept = [a.copy() for a in first]
    det.infer(np.zeros_like(tensor))  # the same request, other values
    for a, k in zip(first, kept, strict=True):
        np.testing.assert_array_equal(a, k)
        assert a.flags.owndata and a.flags.writeable


def test_bad_input_and_precision(perturbed_onnx: Path) -> None:
    det = OpenVinoDetector(perturbed_onnx, threads=1)
    with pytest.raises(ValueError, match="N, 3, H, W"):
        det.infer(np.zeros((3, 96, 128), np.float32))
    with pytest.raises(ValueError, match="N, 3, H, W"):
        det.infer(np.zeros((1, 1, 96, 128), np.float32))
    with pytest.raises(ValueError, match="precision"):
        OpenVinoDetector(perturbed_onnx, precision="fp16")


def test_backends_choose_openvino(perturbed_onnx: Path) -> None:
    assert backends.openvino_installed()
    assert backends.resolve_backend("auto") == "openvino"
    assert backends.resolve_backend("onnxruntime") == "onnxruntime"
    with pytest.raises(ValueError, match="unknown backend"):
        backends.resolve_backend("tensorrt")
    with pytest.raises(ValueError, match="unknown backend"):
        backends.load_detector(perturbed_onnx, "tensorrt")
    auto = backends.load_detector(perturbed_onnx, "auto", threads=1, precision="f32")
    assert isinstance(auto, OpenVinoDetector) and auto.backend == "openvino"
    assert auto.config["INFERENCE_PRECISION_HINT"] == "f32"
    assert auto.config["INFERENCE_NUM_THREADS"] == 1
    ort_det = backends.load_detector(perturbed_onnx, "onnxruntime", threads=1)
    assert isinstance(ort_det, OnnxDetector) and ort_det.backend == "onnxruntime"
    assert auto.metadata == ort_det.metadata


def test_missing_openvino_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, perturbed_onnx: Path
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "openvino", None)  # import openvino fails
    with pytest.raises(ImportError, match=r"pip install 'fcos-detector\[openvino\]'"):
        OpenVinoDetector(perturbed_onnx)
