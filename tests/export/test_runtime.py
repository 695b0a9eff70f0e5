"""export.runtime: the pipeline's choice between the whole-machine engine (a request alone) and
the shared one (requests at once), and ONNX Runtime's two sessions giving the same answer."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export.backends import load_detector, resolve_backend
from export.errors import DetectorError
from export.inferer import Outputs
from export.metadata import INPUT_NAME, ModelMetadata
from export.postprocess import locations
from export.runtime import ImageDetector, OnnxDetector


class Recording(ImageDetector):
    """Zero outputs; records which engine each call took and can hold calls in `infer`."""

    def __init__(self) -> None:
        self.metadata = ModelMetadata(name="t", version="1", preset="tiny",
                                      class_names=("a",), strides=(8, 16, 32, 64, 128),
                                      input_size=64, mean=(0.0,) * 3, std=(1.0,) * 3,
                                      precision="fp32")  # fmt: skip
        self.calls: list[str] = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Semaphore(0)

    def _outputs(self, tensor: np.ndarray, kind: str) -> Outputs:
        self.calls.append(kind)
        self.entered.release()
        assert self.hold.wait(10)
        p = sum(len(loc) for loc in locations(*tensor.shape[2:], self.metadata.strides))
        return (np.full((1, p, 1), -9.0, np.float32), np.ones((1, p, 4), np.float32),
                np.zeros((1, p, 1), np.float32))  # fmt: skip

    def infer(self, tensor: np.ndarray) -> Outputs:
        return self._outputs(tensor, "alone")

    def infer_shared(self, tensor: np.ndarray) -> Outputs:
        return self._outputs(tensor, "shared")


def test_a_request_alone_takes_infer_and_one_beside_it_infer_shared() -> None:
    det = Recording()
    image = Image.new("RGB", (64, 48))
    det.detect_image(image)
    assert det.calls == ["alone"]
    det.entered = threading.Semaphore(0)
    det.hold.clear()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(det.detect_image, image)
        assert det.entered.acquire(timeout=10)  # the first is inside its model call ...
        second = pool.submit(det.detect_image, image)
        assert det.entered.acquire(timeout=10)  # ... when the second reaches its own
        det.hold.set()
        first.result(), second.result()
    assert det.calls == ["alone", "alone", "shared"]
    assert det._active == 0
    with pytest.raises(DetectorError):  # a failing call leaves too
        det.detect_bytes(b"not an image")
    assert det._active == 0
    assert det.detect_image(image).detections.boxes.shape == (0, 4)
    assert det.calls[-1] == "alone"


def test_onnx_shared_session_gives_the_same_outputs(tiny_onnx_path: Path) -> None:
    det = OnnxDetector(tiny_onnx_path, threads=2, spinning=False, shared_threads=1)
    assert det.shared_session is not det.session
    x = np.random.default_rng(0).normal(size=(1, 3, 96, 128)).astype(np.float32)
    for a, b in zip(det.infer(x), det.infer_shared(x), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert det.session.get_inputs()[0].name == INPUT_NAME
    assert det.pipelines(2) == 2  # a call runs on its caller's thread: no more than `workers`
    # Without a narrower thread count there is one session.
    same = OnnxDetector(tiny_onnx_path, threads=1, shared_threads=1)
    assert same.shared_session is same.session


def test_onnx_auto_spinning_picks_the_session_per_run(tiny_onnx_path: Path) -> None:
    det = OnnxDetector(tiny_onnx_path, threads=2, spinning="auto", shared_threads=1)
    assert det.spin_policy is not None
    assert len({id(det.session), id(det.calm_session), id(det.shared_session)}) == 3
    x = np.random.default_rng(0).normal(size=(1, 3, 96, 128)).astype(np.float32)
    used: list[object] = []
    real_run = det.run

    def spy(tensor: np.ndarray, session: object = None) -> object:
        used.append(session)
        return real_run(tensor, session)  # type: ignore[arg-type]

    det.run = spy  # type: ignore[method-assign]
    quiet = det.infer(x)
    assert used[-1] is det.session  # spinning while quiet
    det.spin_policy.spinning = False  # as after runs slowed by a neighbour
    det.spin_policy._next_probe = float("inf")
    calm = det.infer(x)
    assert used[-1] is det.calm_session
    for a, b in zip(quiet, calm, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert det.spin_policy.spin() is False
    # One thread has no pool to spin: a single non-spinning session, no policy.
    one = OnnxDetector(tiny_onnx_path, threads=1, spinning="auto")
    assert one.spin_policy is None and one.session is one.calm_session is one.shared_session


def test_load_detector_onnxruntime(tiny_onnx_path: Path) -> None:
    det = load_detector(tiny_onnx_path, "onnxruntime", threads=2, spinning=False,
                        shared_threads=1)  # fmt: skip
    assert isinstance(det, OnnxDetector) and det.backend == "onnxruntime"
    assert resolve_backend("onnxruntime") == "onnxruntime"
