"""Small units: settings from the environment, threshold semantics, headers, the worker."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from starlette.datastructures import Headers

from export.postprocess import candidate_config
from service.errors import DeadlineExceededError, OverloadedError
from service.middleware import request_id_from, server_timing
from service.settings import (
    DEFAULT_MODEL_PATH,
    REPO_ROOT,
    Settings,
    cgroup_cpu_limit,
    default_threads,
)
from service.worker import InferenceWorker


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DETECTOR_"):
            monkeypatch.delenv(key)
    s = Settings()
    assert s.model_path == DEFAULT_MODEL_PATH == REPO_ROOT / "models" / "default.onnx"
    assert (s.host, s.port, s.score_threshold, s.max_detections) == ("0.0.0.0", 8000, 0.4, 100)
    assert (s.nms_iou, s.max_upload_bytes, s.max_pixels) == (0.5, 10 * 1024 * 1024, 40_000_000)
    assert s.threads >= 1 and s.max_queue == 16
    assert s.spinning == "auto"


@pytest.mark.parametrize(("value", "parsed"), [("auto", "auto"), ("true", True), ("0", False)])
def test_settings_spinning(monkeypatch: pytest.MonkeyPatch, value: str, parsed: object) -> None:
    monkeypatch.setenv("DETECTOR_SPINNING", value)
    assert Settings().spinning == parsed
    monkeypatch.setenv("DETECTOR_SPINNING", "sometimes")
    with pytest.raises(ValidationError):
        Settings()


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETECTOR_MODEL_PATH", "/x/y.onnx")
    monkeypatch.setenv("DETECTOR_PORT", "9001")
    monkeypatch.setenv("DETECTOR_SCORE_THRESHOLD", "0.5")
    monkeypatch.setenv("DETECTOR_MAX_QUEUE", "3")
    monkeypatch.setenv("DETECTOR_LOG_LEVEL", "debug")
    s = Settings()
    assert (s.model_path, s.port, s.score_threshold, s.max_queue) == (Path("/x/y.onnx"), 9001,
                                                                       0.5, 3)  # fmt: skip
    monkeypatch.setenv("DETECTOR_SCORE_THRESHOLD", "2")
    with pytest.raises(ValidationError):
        Settings()


def test_cgroup_cpu_limit(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert cgroup_cpu_limit(cpu_max) == 2
    cpu_max.write_text("max 100000\n")
    assert cgroup_cpu_limit(cpu_max) is None
    assert cgroup_cpu_limit(tmp_path / "absent") is None
    assert 1 <= default_threads() <= (os.cpu_count() or 1)


def test_candidate_threshold_keeps_every_detection_above_the_api_threshold() -> None:
    """score = sqrt(p_cls * ctr) >= t needs p_cls >= t**2: the candidate threshold is t**2
    (floored at 1e-4) and score_threshold is t, so nothing scoring >= t is dropped early."""
    assert candidate_config(0.3, 100, 0.6).candidate_threshold == pytest.approx(0.09)
    assert candidate_config(0.1, 100, 0.6).candidate_threshold == pytest.approx(0.01)
    assert candidate_config(0.0, 100, 0.6).candidate_threshold == 1e-4
    assert candidate_config(1.0, 100, 0.6).candidate_threshold == 0.999
    cfg = candidate_config(0.5, 7, 0.4)
    assert (cfg.max_detections, cfg.nms_iou, cfg.score_threshold) == (7, 0.4, 0.5)


@pytest.mark.parametrize("threshold", [0.25, 0.4, 0.6])
@pytest.mark.parametrize("max_detections", [3, 100])
def test_service_cuts_equal_evaluation_postprocess_then_filter(
    threshold: float, max_detections: int
) -> None:
    """Reference: the evaluation settings (candidate 0.05, no score_threshold), then keep scores
    >= t. The service's early cuts (candidate t**2, score_threshold t before NMS) must give exactly
    the same detections, on outputs with many overlapping candidates."""
    from export.postprocess import PostprocessConfig, level_sizes, postprocess

    strides = (8, 16, 32, 64, 128)
    total = sum(h * w for h, w in level_sizes(128, 160, strides))
    rng = np.random.default_rng(7)
    cls = rng.normal(-1.0, 1.5, size=(total, 4)).astype(np.float32)
    box = rng.uniform(4, 60, size=(total, 4)).astype(np.float32)
    ctr = rng.normal(0.5, 1.0, size=(total, 1)).astype(np.float32)
    ref_cfg = PostprocessConfig(nms_iou=0.6, max_detections=max_detections)
    ref = postprocess(cls, box, ctr, (128, 160), strides, None, ref_cfg)
    keep = ref.scores >= threshold
    got = postprocess(cls, box, ctr, (128, 160), strides, None,
                      candidate_config(threshold, max_detections, 0.6))  # fmt: skip
    assert len(got) == int(keep.sum()) > 0
    np.testing.assert_array_equal(got.boxes, ref.boxes[keep])
    np.testing.assert_array_equal(got.scores, ref.scores[keep])
    np.testing.assert_array_equal(got.class_ids, ref.class_ids[keep])


def test_request_id_and_server_timing_format() -> None:
    assert request_id_from(Headers({"x-request-id": "req-1.2_3:4"})) == "req-1.2_3:4"
    for bad in ("", "a b", "x" * 129, "a\r\nSet-Cookie: y"):
        rid = request_id_from(Headers({"x-request-id": bad}))
        assert rid != bad and len(rid) == 32
    timing = server_timing({"decode": 0.0012, "inference": 0.0801, "total": 0.1}, 9.0)
    assert timing == "decode;dur=1.20, inference;dur=80.10, total;dur=100.00"


def test_worker_runs_one_job_at_a_time_on_one_thread() -> None:
    names: set[str] = set()
    active, peak = [0], [0]
    lock = threading.Lock()

    def job() -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        names.add(threading.current_thread().name)
        time.sleep(0.005)
        with lock:
            active[0] -= 1
        return 1

    async def main() -> list[int]:
        worker = InferenceWorker(max_queue=10)
        try:
            results = await asyncio.gather(*(worker.run(job) for _ in range(8)))
        finally:
            worker.shutdown()
        return [r for r, _ in results]

    assert asyncio.run(main()) == [1] * 8
    assert peak[0] == 1 and len(names) == 1


def test_worker_overflow_and_deadline() -> None:
    gate = threading.Event()

    async def main() -> None:
        depths: list[int] = []
        worker = InferenceWorker(max_queue=2, retry_after_s=5, on_depth=depths.append)
        running = asyncio.ensure_future(worker.run(lambda: gate.wait(10)))
        waiting = asyncio.ensure_future(worker.run(lambda: 2))
        await asyncio.sleep(0.05)
        with pytest.raises(DeadlineExceededError):  # waits behind `running`, then gives up
            await worker.run(lambda: 3, deadline=time.monotonic() + 0.01)
        assert worker.depth == 1  # its slot was released
        waiting2 = asyncio.ensure_future(worker.run(lambda: 4))
        await asyncio.sleep(0.01)
        with pytest.raises(OverloadedError) as info:
            await worker.run(lambda: 5)
        assert info.value.headers == {"Retry-After": "5"}
        gate.set()
        assert (await running)[0] is True
        assert (await waiting)[0] == 2 and (await waiting2)[0] == 4
        assert worker.depth == 0 and depths[-1] == 0
        worker.shutdown()

    asyncio.run(main())
