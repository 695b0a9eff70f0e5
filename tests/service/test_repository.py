"""Many models, one server: DETECTOR_MODEL_DIR, GET /models, ?model=, /v2 per model, rescans
that add, swap and remove models (also under traffic, in a real server process), the default
model, DETECTOR_MAX_MODELS and the per-model metrics."""

from __future__ import annotations

import shutil
import signal
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from bench.attacks.images import jpeg
from bench.attacks.server import ready_server
from tests import wait_until
from tests.service.test_metrics import scrape, value
from tests.service.test_reload import with_version


@pytest.fixture
def repo(tiny_onnx_path: Path, tmp_path: Path) -> Path:
    """A folder with the tiny model as `default` and as `birds` (Triton layout, version 3)."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(tiny_onnx_path, folder / "default.onnx")
    (folder / "birds" / "3").mkdir(parents=True)
    shutil.copy(tiny_onnx_path, folder / "birds" / "3" / "model.onnx")
    return folder


def names(client: TestClient) -> list[str]:
    return [m["name"] for m in client.get("/models").json()["models"]]


def settled(client: TestClient) -> dict[str, str]:
    """Each model's state once none is loading (ready follows the default model alone)."""

    def states() -> dict[str, str] | None:
        found = {m["name"]: m["state"] for m in client.get("/models").json()["models"]}
        return None if "loading" in found.values() else found

    result: dict[str, str] = wait_until(states, 30, what="models still loading")
    return result


def test_models_are_listed_and_chosen_by_name(serve: Any, repo: Path) -> None:
    with serve(model_dir=repo) as (_, c):
        settled(c)
        listing = c.get("/models").json()
        assert listing["default"] == "default" and names(c) == ["birds", "default"]
        birds = c.get("/models/birds").json()
        assert birds["version"] == "3" and birds["state"] == "ready" and birds["file"] == (
            "model.onnx") and birds["classes"] == ["cat", "dog", "person"]  # fmt: skip
        assert birds["input_size"] == 128 and birds["precision"] == "fp32"
        assert birds["backend"] == "onnxruntime" and birds["memory_bytes"] >= 0
        assert c.get("/model").json()["name"] == "default"
        r = c.post("/detect?model=birds&score_threshold=0", content=jpeg())
        assert r.json()["model"] == {"name": "birds", "version": "3"}
        plain = c.post("/detect?score_threshold=0", content=jpeg()).json()
        assert plain["model"]["name"] == "default"
        assert plain["detections"] == r.json()["detections"]  # the same network
        batch = c.post("/detect/batch?model=birds", files=[("image", jpeg())]).json()
        assert batch["model"]["name"] == "birds"
        for path in ("/detect?model=cats", "/detect/batch?model=cats"):
            r = c.post(path, content=jpeg())
            assert r.status_code == 404, path
            assert r.json()["error"]["message"] == "unknown model 'cats'; models: birds, default"
        assert c.get("/models/cats").status_code == 404
        v2 = c.get("/v2/models/birds").json()
        assert v2["name"] == "birds" and v2["versions"] == ["3"]
        assert c.get("/v2/models/birds/versions/3/ready").json() == {"ready": True}
        assert c.get("/v2/models/birds/versions/2/ready").status_code == 404
        families = scrape(c)
        for model in ("default", "birds"):
            assert value(families, "detector_model_ready", model=model) == 1
        assert value(families, "detector_requests_total", model="birds", route="detect",
                     outcome="ok") == 1  # fmt: skip
        # an unknown name never becomes a label value
        for route in ("detect", "batch"):
            assert value(families, "detector_requests_total", model="", route=route,
                         outcome="bad_request") == 1  # fmt: skip
        assert "cats" not in c.get("/metrics").text


def test_the_default_model(serve: Any, tiny_onnx_path: Path, tmp_path: Path) -> None:
    only = tmp_path / "only"
    only.mkdir()
    shutil.copy(tiny_onnx_path, only / "cars.onnx")
    with serve(model_dir=only) as (_, c):  # the only model is the default
        assert c.get("/models").json()["default"] == "cars"
        assert c.post("/detect", content=jpeg()).json()["model"]["name"] == "cars"
    shutil.copy(tiny_onnx_path, only / "boats.onnx")
    with serve(model_dir=only, default_model="boats") as (_, c):
        assert c.post("/detect", content=jpeg()).json()["model"]["name"] == "boats"
    with serve(model_dir=only, ready=False) as (app, c):  # two, none named "default"
        wait_until(lambda: app.state.engine.ready, 20, what="the models never loaded")
        r = c.post("/detect", content=jpeg())
        assert r.status_code == 404 and "models: boats, cars" in r.json()["error"]["message"]
        assert c.post("/detect?model=cars", content=jpeg()).status_code == 200
    with serve(model_dir=only, default_model="ghost", ready=False) as (app, c):
        wait_until(lambda: app.state.engine.models.get("cars") is not None and
                   app.state.engine.models["cars"].state == "ready", 20)  # fmt: skip
        assert c.get("/health/ready").status_code == 503  # readiness follows the default


def test_rescans_add_swap_and_remove(serve: Any, repo: Path, tiny_onnx_path: Path) -> None:
    with serve(model_dir=repo, admin_reload=True) as (_, c):
        settled(c)
        shutil.copy(tiny_onnx_path, repo / "cars.onnx")
        (repo / "birds" / "4").mkdir()
        shutil.copy(tiny_onnx_path, repo / "birds" / "4" / "model.onnx")
        r = c.post("/admin/reload").json()
        actions = {ch["name"]: (ch["action"], ch["version"], ch["previous_version"])
                   for ch in r["changes"]}  # fmt: skip
        assert actions == {"cars": ("added", "0.1.0", None), "birds": ("changed", "4", "3")}
        assert names(c) == ["birds", "cars", "default"]
        (repo / "cars.onnx").unlink()
        r = c.post("/admin/reload").json()
        assert r["changes"] == [{"name": "cars", "action": "removed", "version": None,
                                 "previous_version": "0.1.0", "load_ms": None, "error": None}]
        assert c.post("/detect?model=cars", content=jpeg()).status_code == 404
        assert "cars" not in c.get("/metrics").text  # its series are gone too
        (repo / "broken.onnx").write_bytes(b"not a model")
        r = c.post("/admin/reload")
        assert r.status_code == 409 and "broken: cannot load broken.onnx" in r.text
        broken = c.get("/models/broken").json()
        assert broken["state"] == "failed" and broken["reason"] == (
            "cannot load broken.onnx: not a loadable ONNX model")  # fmt: skip
        assert c.post("/detect?model=broken", content=jpeg()).status_code == 503
        index = {e["name"]: e["state"] for e in c.post("/v2/repository/index").json()}
        assert index == {"birds": "READY", "broken": "UNAVAILABLE", "default": "READY"}
        assert c.get("/health/ready").status_code == 200  # the default serves on
        families = scrape(c)
        assert value(families, "detector_model_ready", model="broken") == 0
        assert value(families, "detector_model_reloads_total", model="broken",
                     result="failed") == 1  # fmt: skip


def test_max_models_refuses_the_rest(serve: Any, repo: Path, tiny_onnx_path: Path) -> None:
    shutil.copy(tiny_onnx_path, repo / "cars.onnx")
    with serve(model_dir=repo, max_models=2, admin_reload=True) as (_, c):
        assert settled(c) == {"default": "ready", "birds": "ready", "cars": "refused"}
        r = c.post("/detect?model=cars", content=jpeg())
        assert r.status_code == 503 and "DETECTOR_MAX_MODELS (2)" in r.json()["error"]["message"]
        shutil.copy(tiny_onnx_path, repo / "aardvarks.onnx")  # a new file never evicts one
        c.post("/admin/reload")
        states = {m["name"]: m["state"] for m in c.get("/models").json()["models"]}
        assert states["birds"] == "ready" and states["aardvarks"] == "refused"
        shutil.rmtree(repo / "birds")  # room again: the next rescan loads one of the others
        c.post("/admin/reload")
        states = {m["name"]: m["state"] for m in c.get("/models").json()["models"]}
        assert states == {"aardvarks": "ready", "cars": "refused", "default": "ready"}


@pytest.mark.slow
def test_sighup_adds_and_removes_models_under_traffic(
    tiny_onnx_path: Path, tmp_path: Path, repo: Path
) -> None:
    """Clients keep calling both models while a third is added, the second swapped to a new
    version and then removed: no request fails except those naming a model that is gone."""
    with ready_server(tmp_path, repo / "default.onnx", DETECTOR_MODEL_DIR=str(repo),
                      DETECTOR_WORKERS="2") as srv:  # fmt: skip
        stop = threading.Event()
        statuses: Counter[tuple[str, int]] = Counter()
        lock = threading.Lock()

        def load(model: str) -> None:
            with httpx.Client(base_url=srv.url, timeout=30) as client:
                while not stop.is_set():
                    r = client.post(f"/detect?model={model}", content=jpeg())
                    with lock:
                        statuses[model, r.status_code] += 1

        def listed() -> list[str]:
            return [m["name"] for m in httpx.get(srv.url + "/models").json()["models"]
                    if m["state"] == "ready"]  # fmt: skip

        wait_until(lambda: "birds" in listed(), 30, what="birds never loaded")
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(load, m) for m in ("default", "default", "birds")]
            try:
                wait_until(lambda: statuses["birds", 200] >= 3, 30)
                shutil.copy(tiny_onnx_path, repo / ".cars.onnx")  # copy, then rename in
                (repo / ".cars.onnx").rename(repo / "cars.onnx")
                srv.proc.send_signal(signal.SIGHUP)
                wait_until(lambda: "cars" in listed(), 30, 0.05, what="cars never loaded")
                r = httpx.post(srv.url + "/detect?model=cars", content=jpeg(), timeout=30)
                assert r.json()["model"]["name"] == "cars"
                with_version(repo / "birds" / "3" / "model.onnx",
                             repo / "birds" / "3" / "model.onnx", "9.9.9")  # fmt: skip
                srv.proc.send_signal(signal.SIGHUP)  # the same version folder, a new file
                wait_until(lambda: any(r.get("message") == "model ready" and r.get("model") ==
                                       "birds" and r.get("trigger") == "SIGHUP"
                                       for r in srv.log_records()), 30, 0.05)  # fmt: skip
                before = statuses["birds", 200]
                wait_until(lambda: statuses["birds", 200] >= before + 3, 30)
                shutil.rmtree(repo / "birds")
                srv.proc.send_signal(signal.SIGHUP)
                wait_until(lambda: "birds" not in listed(), 30, 0.05, what="birds stayed")
                wait_until(lambda: statuses["birds", 404] >= 1, 30)
                n_default = statuses["default", 200]
                wait_until(lambda: statuses["default", 200] >= n_default + 3, 30)
            finally:
                stop.set()
                for f in futures:
                    f.result()
        assert {k for k in statuses if k[1] != 200} == {("birds", 404)}, statuses
        assert statuses["default", 200] > 10
        assert not [r for r in srv.log_records() if r["level"] == "error"]
