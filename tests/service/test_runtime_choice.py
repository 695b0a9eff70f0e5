"""DETECTOR_BACKEND=auto in the service: the runtime is chosen by measurement at load (and on
every reload of a file), shown in /model, /models and `detector_runtime_info`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from export.client import DetectorClient
from tests.export.test_runtime_choice import make_record, with_record
from tests.service.test_metrics import scrape

RUNTIME_INFO = "detector_runtime_info"


def runtime_series(client: Any) -> list[dict[str, str]]:
    return [s.labels for s in scrape(client)[RUNTIME_INFO].samples if s.value == 1]


def test_auto_times_two_installed_runtimes_at_startup(
    serve: Any, tiny_onnx_path: Path, tmp_path: Path
) -> None:
    pytest.importorskip("openvino")
    record = make_record(openvino_f32=True, openvino_bf16=False).to_json()
    path = with_record(tiny_onnx_path, tmp_path / "default.onnx", record)
    with serve(model_path=path, backend="auto", backend_trial_s=0.3, workers=2) as (_, c):
        runtime = c.get("/model").json()["runtime"]
        assert runtime["chosen_by"] == "auto"
        assert set(runtime["timings_ms"]) == {"onnxruntime", "openvino-f32"}
        assert runtime["config"] in runtime["timings_ms"]
        assert runtime["skipped"]["openvino-bf16"].startswith("not validated")
        assert runtime["validation"]["valid"] == ["onnxruntime", "openvino-f32"]
        listed = c.get("/models").json()["models"][0]
        assert listed["runtime"] == runtime and listed["backend"] == runtime["backend"]
        assert c.get("/models/default").json()["runtime"] == runtime
        precision = "f32"  # onnxruntime's float layers, or the record's openvino-f32
        assert runtime_series(c) == [{"model": "default", "backend": runtime["backend"],
                                      "precision": precision, "chosen_by": "auto"}]  # fmt: skip


def test_a_file_without_a_record_is_served_on_onnxruntime_with_the_reason(
    serve: Any, tiny_onnx_path: Path
) -> None:
    with serve(backend="auto") as (_, c):
        runtime = c.get("/model").json()["runtime"]
        assert runtime["config"] == "onnxruntime" and runtime["chosen_by"] == "auto"
        assert runtime["reason"] == "the file has no runtime_validation record"
        assert runtime["timings_ms"] == {} and runtime["validation"] is None
        assert runtime_series(c) == [{"model": "fcos-tiny", "backend": "onnxruntime",
                                      "precision": "f32", "chosen_by": "auto"}]  # fmt: skip


def test_a_forced_backend_is_shown_as_the_setting(serve: Any) -> None:
    with serve(backend="onnxruntime") as (_, c):
        runtime = c.get("/model").json()["runtime"]
        assert (runtime["config"], runtime["chosen_by"]) == ("onnxruntime", "setting")
        assert runtime["reason"] == "DETECTOR_BACKEND=onnxruntime"
        api = DetectorClient(http=c)
        assert api.model().runtime == runtime
        assert api.models()[0].runtime == runtime
        assert api.model("fcos-tiny").runtime == runtime


def test_a_reload_chooses_again_for_the_new_file(
    serve: Any, tiny_onnx_path: Path, tmp_path: Path
) -> None:
    pytest.importorskip("openvino")
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(tiny_onnx_path, folder / "default.onnx")
    with serve(model_dir=folder, backend="auto", backend_trial_s=0.2,
               admin_reload=True) as (_, c):  # fmt: skip
        assert c.get("/model").json()["runtime"]["timings_ms"] == {}
        record = make_record(openvino_f32=True).to_json()
        staged = with_record(tiny_onnx_path, tmp_path / "new.onnx", record)
        os.replace(staged, folder / "default.onnx")
        assert c.post("/admin/reload").status_code == 200
        runtime = c.get("/model").json()["runtime"]
        assert set(runtime["timings_ms"]) == {"onnxruntime", "openvino-f32"}
        assert len(runtime_series(c)) == 1  # the previous file's series replaced
        (folder / "default.onnx").unlink()
        assert c.post("/admin/reload").status_code == 200
        assert runtime_series(c) == []  # removed with the model


def test_a_forced_openvino_prepares_concurrent_calls_for_every_warmup_shape(serve: Any) -> None:
    """Workers share the threads: the engine of concurrent calls (OpenVINO compiles one per
    shape, ~1 s) is compiled at warm-up for each warm-up shape, not in a first request."""
    pytest.importorskip("openvino")
    from export.model_check import warmup_sizes
    from export.preprocess import letterbox_size

    with serve(backend="openvino", openvino_precision="f32", threads=2, workers=3,
               warmup=True) as (app, c):  # fmt: skip
        (entry,) = app.state.engine.models.values()
        size = entry.detector.metadata.input_size
        padded = [letterbox_size(w, h, size)[3:] for w, h in warmup_sizes(size)]  # (pw, ph)
        shapes = sorted({(1, 3, ph, pw) for pw, ph in padded})
        assert sorted(entry.detector.shared_shapes) == shapes
        assert c.get("/model").json()["runtime"]["config"] == "openvino-f32"
