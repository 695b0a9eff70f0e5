"""Readiness follows the model: loading -> ready, or failed (missing / corrupt file)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from bench.attacks.images import jpeg
from export.runtime import OnnxDetector
from service.engine import Detector
from tests.service.conftest import wait_ready


def test_not_ready_until_loaded_and_warmed(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    warmed: list[bool] = []

    def slow_loader(path: Path, threads: int) -> Detector:
        assert release.wait(timeout=30)
        detector = OnnxDetector(path, threads)
        original = detector.detect_image

        def detect_image(*args: Any, **kwargs: Any) -> Any:
            warmed.append(True)
            return original(*args, **kwargs)

        detector.detect_image = detect_image  # type: ignore[method-assign]
        return detector

    with (
        caplog.at_level(logging.INFO, logger="service"),
        serve(loader=slow_loader, ready=False) as (_, c),
    ):
        assert c.get("/health/live").status_code == 200
        r = c.get("/health/ready")
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        assert c.post("/detect", content=jpeg()).status_code == 503
        assert c.get("/model").status_code == 503
        assert 'detector_model_ready{model="fcos-tiny"} 0.0' in c.get("/metrics").text
        release.set()
        wait_ready(c)
        assert warmed, "readiness must come after one warm-up inference"
        assert c.post("/detect", content=jpeg()).status_code == 200
        metrics = c.get("/metrics").text
        assert 'detector_model_ready{model="fcos-tiny"} 1.0' in metrics
        assert ('detector_model_info{model="fcos-tiny",name="fcos-tiny",precision="fp32",'
                'preset="tiny"') in metrics
    ready_logs = [r for r in caplog.records if r.getMessage() == "model ready"]
    assert len(ready_logs) == 1 and ready_logs[0].model_name == "fcos-tiny"  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("kind", ["missing", "corrupt", "empty", "no-metadata"])
def test_bad_model_file(
    serve: Any, tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "model.onnx"
    if kind == "corrupt":
        path.write_bytes(b"\x08\x07garbage" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "no-metadata":  # a valid ONNX graph without this project's metadata
        import onnx
        from onnx import TensorProto, helper

        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "g",
            [x],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with (
        caplog.at_level(logging.ERROR, logger="service.reload"),
        serve(model_path=path, ready=False) as (app, c),
    ):
        while app.state.engine.state() == "loading":
            threading.Event().wait(0.01)
        assert c.get("/health/live").status_code == 200
        ready = c.get("/health/ready")
        assert ready.status_code == 503
        assert str(ready.json()["error"]["message"]).startswith("model not ready:")
        detect = c.post("/detect", content=jpeg())
        assert detect.status_code == 503 and detect.json()["error"]["code"] == "not_ready"
        assert c.get("/model").status_code == 503
        assert 'detector_model_ready{model="model"} 0.0' in c.get("/metrics").text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "model not loaded" in errors[0].getMessage()
    if kind == "missing":
        assert "DETECTOR_MODEL_PATH" in errors[0].getMessage()
