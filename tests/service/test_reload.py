"""Model reload (service.reload) of a one-model repository (DETECTOR_MODEL_PATH): POST
/admin/reload (opt-in, token) and SIGHUP swap in a changed file; requests in flight finish on
the old model; a bad file is refused and the old model keeps serving. The folder repository:
tests/service/test_repository.py."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bench.attacks.images import jpeg
from export.runtime import OnnxDetector
from service.engine import Detector
from tests.service.conftest import GatedDetector
from tests.service.test_metrics import scrape, value


def with_version(src: Path, dst: Path, version: str) -> Path:
    """A copy of the ONNX file `src` whose metadata says `version`."""
    onnx = pytest.importorskip("onnx", reason="rewriting ONNX metadata needs the onnx package")
    proto = onnx.load(str(src))
    for prop in proto.metadata_props:
        if prop.key == "version":
            prop.value = version
    tmp = dst.with_suffix(".tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(dst)  # atomic, like a deployment would do it
    return dst


@pytest.fixture
def model_file(tiny_onnx_path: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(tiny_onnx_path, tmp_path / "model.onnx"))


def version_of(client: TestClient) -> str:
    version: str = client.get("/model").json()["version"]
    return version


def test_admin_route_is_off_by_default(client: TestClient) -> None:
    r = client.post("/admin/reload")
    assert r.status_code == 404 and "DETECTOR_ADMIN_RELOAD" in r.json()["error"]["message"]


def test_admin_reload_swaps_and_refuses_bad_files(serve: Any, model_file: Path) -> None:
    with serve(model_path=model_file, admin_reload=True, admin_token="t0ken") as (_, client):
        assert client.post("/admin/reload").status_code == 401
        wrong = client.post("/admin/reload", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        auth = {"authorization": "Bearer t0ken"}
        assert version_of(client) == "0.1.0"
        with_version(model_file, model_file, "0.2.0")
        r = client.post("/admin/reload", headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["changes"] == [{
            "name": "model", "action": "changed", "version": "0.2.0", "previous_version": "0.1.0",
            "load_ms": r.json()["changes"][0]["load_ms"], "error": None}]  # fmt: skip
        assert version_of(client) == "0.2.0"
        families = scrape(client)
        m = {"model": "model"}
        assert value(families, "detector_model_info", name="fcos-tiny", version="0.2.0", **m) == 1
        assert value(families, "detector_model_reloads_total", result="ok", **m) == 1
        assert len([s for s in families["detector_model_info"].samples]) == 1
        unchanged = client.post("/admin/reload", headers=auth).json()
        assert unchanged == {"status": "unchanged", "changes": [], "models": ["model"]}
        for bad in (b"not an onnx file", b""):
            model_file.write_bytes(bad)
            r = client.post("/admin/reload", headers=auth)
            assert r.status_code == 409 and "still serving model 0.2.0" in r.json()["error"][
                "message"]  # fmt: skip
            status = client.get("/models/model").json()
            assert status["state"] == "ready" and "still serving" in status["last_error"]
            assert version_of(client) == "0.2.0"
            assert client.post("/detect", content=jpeg()).status_code == 200
        model_file.unlink()
        assert client.post("/admin/reload", headers=auth).status_code == 409
        assert client.get("/health/ready").status_code == 200
        assert value(scrape(client), "detector_model_reloads_total", result="failed", **m) == 3


def test_in_flight_request_finishes_on_the_old_model(serve: Any, model_file: Path) -> None:
    loaded: list[Detector] = []

    def loader(path: Path, threads: int) -> Detector:  # the first model held by a gate
        inner = OnnxDetector(path, threads)
        loaded.append(GatedDetector(inner) if not loaded else inner)
        return loaded[-1]

    with serve(loader=loader, model_path=model_file, admin_reload=True) as (_, client):
        gated = loaded[0]
        assert isinstance(gated, GatedDetector)
        gated.gate.clear()
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(client.post, "/detect", content=jpeg())
            assert gated.started.acquire(timeout=10)  # the request is inside the old model
            with_version(model_file, model_file, "0.3.0")
            r = client.post("/admin/reload")  # not blocked by the busy inference worker
            assert r.status_code == 200 and r.json()["changes"][0]["version"] == "0.3.0"
            gated.gate.set()
            old = held.result(timeout=30)
        assert old.status_code == 200 and old.json()["model"]["version"] == "0.1.0"
        new = client.post("/detect", content=jpeg())
        assert new.json()["model"]["version"] == "0.3.0"
        assert gated.calls == 1 and len(loaded) == 2


def test_concurrent_reloads_are_serialised(serve: Any, model_file: Path) -> None:
    with serve(model_path=model_file, admin_reload=True) as (_, client):
        with_version(model_file, model_file, "0.2.0")
        barrier = threading.Barrier(3)

        def reload() -> str:
            barrier.wait()
            r = client.post("/admin/reload")
            assert r.status_code == 200
            return str(r.json()["status"])

        with ThreadPoolExecutor(3) as pool:  # one loads the new file, the others find it loaded
            statuses = sorted(pool.map(lambda _: reload(), range(3)))
        assert statuses == ["reloaded", "unchanged", "unchanged"]
        assert value(scrape(client), "detector_model_reloads_total", model="model",
                     result="ok") == 1  # fmt: skip
        assert version_of(client) == "0.2.0"
