"""The bounded queue in front of the inference workers, and request deadlines."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from bench.attacks.images import jpeg
from tests import wait_until


def metric(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise KeyError(name)


def depth(app: FastAPI) -> int:
    return app.state.engine.worker.depth


def test_overflow_is_refused_at_once_with_retry_after(gated_serve: Any) -> None:
    with gated_serve(max_queue=2, retry_after_s=3) as (app, c, det), ThreadPoolExecutor(3) as pool:
        det.gate.clear()
        image = jpeg(64, 64)
        held = [pool.submit(c.post, "/detect", content=image) for _ in range(3)]
        assert det.started.acquire(timeout=10)  # one running ...
        wait_until(lambda: depth(app) == 2, interval_s=0.002)  # ... two waiting: the queue is full
        assert metric(c, "detector_queue_depth") == 2
        assert metric(c, "detector_in_flight_requests") == 3
        t0 = time.perf_counter()
        r = c.post("/detect", content=image)
        assert time.perf_counter() - t0 < 1.0
        assert r.status_code == 503 and r.headers["retry-after"] == "3"
        assert r.json()["error"]["code"] == "overloaded"
        assert c.get("/health/live").status_code == 200  # the event loop is not blocked
        det.gate.set()
        assert [f.result().status_code for f in held] == [200, 200, 200]
        assert c.post("/detect", content=image).status_code == 200
        text = c.get("/metrics").text
        labels = 'model="fcos-tiny",outcome="overloaded",route="detect"'
        assert f"detector_requests_total{{{labels}}} 1.0" in text
        assert metric(c, "detector_queue_depth") == 0


def test_max_queue_zero_allows_only_the_running_request(gated_serve: Any) -> None:
    with gated_serve(max_queue=0) as (_, c, det), ThreadPoolExecutor(1) as pool:
        det.gate.clear()
        running = pool.submit(c.post, "/detect", content=jpeg())
        assert det.started.acquire(timeout=10)
        assert c.post("/detect", content=jpeg()).status_code == 503
        det.gate.set()
        assert running.result().status_code == 200


def test_deadline_while_running(gated_serve: Any) -> None:
    with gated_serve() as (_, c, det):
        det.gate.clear()
        t0 = time.perf_counter()
        r = c.post("/detect?timeout_ms=100", content=jpeg())
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        assert 0.09 < time.perf_counter() - t0 < 2.0
        det.gate.set()
        assert c.post("/detect", content=jpeg()).status_code == 200
        labels = 'model="fcos-tiny",outcome="timeout",route="detect"'
        assert f"detector_requests_total{{{labels}}} 1.0" in c.get("/metrics").text


def test_deadline_while_waiting_drops_the_job(gated_serve: Any) -> None:
    with gated_serve() as (app, c, det), ThreadPoolExecutor(1) as pool:
        det.gate.clear()
        first = pool.submit(c.post, "/detect", content=jpeg())
        assert det.started.acquire(timeout=10)
        r = c.post("/detect?timeout_ms=50", content=jpeg())
        assert r.status_code == 504
        assert depth(app) == 0  # the waiting job was cancelled, its slot released
        det.gate.set()
        assert first.result().status_code == 200
        assert det.calls == 1  # the timed-out request never ran


def test_server_side_deadline_setting(gated_serve: Any) -> None:
    with gated_serve(request_timeout_s=0.1) as (_, c, det):
        det.gate.clear()
        assert c.post("/detect", content=jpeg()).status_code == 504
        det.gate.set()
        assert c.post("/detect", content=jpeg()).status_code == 200
        # the query can only shorten the budget, never extend past the server's deadline
        det.gate.clear()
        t0 = time.perf_counter()
        assert c.post("/detect?timeout_ms=600000", content=jpeg()).status_code == 504
        assert time.perf_counter() - t0 < 2.0


def test_two_workers_run_two_requests_at_once(gated_serve: Any) -> None:
    """DETECTOR_WORKERS=2: two requests are inside the pipeline together; with max_queue=1 one
    more may wait and the next is refused."""
    with gated_serve(workers=2, max_queue=1) as (app, c, det), ThreadPoolExecutor(3) as pool:
        det.gate.clear()
        image = jpeg(64, 64)
        held = [pool.submit(c.post, "/detect", content=image) for _ in range(3)]
        assert det.started.acquire(timeout=10) and det.started.acquire(timeout=10)  # both run
        wait_until(lambda: depth(app) == 1, interval_s=0.002)  # the third waits
        assert metric(c, "detector_in_flight_requests") == 3
        r = c.post("/detect", content=image)
        assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded"
        det.gate.set()
        assert [f.result().status_code for f in held] == [200, 200, 200]
        assert det.calls == 3


def test_a_model_whose_runtime_queues_calls_runs_one_pipeline_more(gated_serve: Any) -> None:
    """A detector that asks for `workers` + 1 pipelines (OpenVINO's multi-stream model) gets
    the worker's spare thread: three requests in the pipeline at once with DETECTOR_WORKERS=2,
    within the same room (max_queue + workers) as before."""
    with gated_serve(workers=2, max_queue=2) as (app, c, det), ThreadPoolExecutor(4) as pool:
        det.pipelines = lambda workers: workers + 1  # type: ignore[attr-defined]
        det.gate.clear()
        image = jpeg(64, 64)
        held = [pool.submit(c.post, "/detect", content=image) for _ in range(4)]
        for _ in range(3):
            assert det.started.acquire(timeout=10)
        wait_until(lambda: depth(app) == 1, interval_s=0.002)  # the fourth waits
        assert not det.started.acquire(timeout=0.2)
        r = c.post("/detect", content=image)
        assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded"
        det.gate.set()
        assert [f.result().status_code for f in held] == [200] * 4
        assert det.calls == 4
