"""The new routes driven by real clients against `python -m service` as a real process:
tritonclient[http] (Open Inference Protocol), export.client (sync and async), and a model
reload by SIGHUP under load (no request may fail during the swap)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.attacks.images import jpeg, png
from bench.attacks.server import Server, ready_server
from export.client import AsyncDetectorClient, DetectorAPIError, DetectorClient, DetectResult
from tests import TINY_CLASSES, wait_until
from tests.service.test_reload import with_version

pytestmark = pytest.mark.slow
MODEL = "fcos-tiny"


@pytest.fixture(scope="module")
def model_file(tiny_onnx_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(shutil.copy(tiny_onnx_path, tmp_path_factory.mktemp("m") / f"{MODEL}.onnx"))


@pytest.fixture(scope="module")
def server(model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with ready_server(tmp_path_factory.mktemp("srv"), model_file, DETECTOR_MAX_QUEUE="64") as srv:
        yield srv


def test_tritonclient(server: Server) -> None:
    http = pytest.importorskip("tritonclient.http", reason="pip install 'tritonclient[http]'")
    from tritonclient.utils import InferenceServerException

    client = http.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and not client.is_model_ready("other")
    assert client.get_model_repository_index() == [
        {"name": MODEL, "version": "0.1.0", "state": "READY", "reason": ""}]
    meta = client.get_model_metadata(MODEL)
    assert meta["inputs"][0] == {"name": "image", "datatype": "BYTES", "shape": [-1]}
    a, b = jpeg(320, 240), png(160, 200)
    tensor = http.InferInput("image", [2], "BYTES")
    tensor.set_data_from_numpy(np.array([a, b], dtype=np.object_))  # binary by default
    res = client.infer(MODEL, [tensor], parameters={"score_threshold": 0.0, "max_detections": 9})
    n = res.as_numpy("num_detections")
    with DetectorClient(server.url) as ours:
        for i, img in enumerate((a, b)):
            ref = ours.detect(img, score_threshold=0.0, max_detections=9)
            assert n[i] == len(ref.detections) > 0
            names = [x.decode() for x in res.as_numpy("class_names")[i, : n[i]]]
            assert names == [d.label for d in ref.detections]
            np.testing.assert_allclose(res.as_numpy("boxes")[i, : n[i]],
                                       [d.box for d in ref.detections], atol=0.06)  # fmt: skip
            np.testing.assert_allclose(res.as_numpy("scores")[i, : n[i]],
                                       [d.score for d in ref.detections], atol=6e-5)  # fmt: skip
    wanted = [http.InferRequestedOutput("class_names", binary_data=False)]
    res = client.infer(MODEL, [tensor], outputs=wanted,
                       parameters={"score_threshold": 0.0, "classes": "dog"})  # fmt: skip
    assert set(res.as_numpy("class_names").ravel()) <= {"dog", ""}
    with pytest.raises(InferenceServerException, match="unknown class"):
        client.infer(MODEL, [tensor], parameters={"classes": "unicorn"})
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.infer("other", [tensor])


def test_sync_client(server: Server) -> None:
    with DetectorClient(server.url) as client:
        assert client.ready()
        info = client.model()
        assert info.name == MODEL and info.classes == list(TINY_CLASSES)
        result = client.detect(jpeg(), score_threshold=0.0, max_detections=5, classes=["cat"])
        assert isinstance(result, DetectResult) and len(result.detections) == 5
        assert {d.label for d in result.detections} == {"cat"} and result.width == 320
        items = client.detect_batch([jpeg(), b"junk"], score_threshold=0.0, max_detections=3)
        assert isinstance(items[0], DetectResult) and len(items[0].detections) == 3
        assert isinstance(items[1], DetectorAPIError) and items[1].status == 415
        drawn = client.annotate(jpeg(), image_format="png", score_threshold=0.0)
        assert drawn.startswith(b"\x89PNG")
        with pytest.raises(DetectorAPIError) as err:
            client.detect(jpeg(), classes=["unicorn"])
        assert err.value.status == 422 and "valid: cat, dog, person" in err.value.message
        with pytest.raises(DetectorAPIError) as err:
            client.reload()
        assert err.value.status == 404


def test_async_client(server: Server) -> None:
    async def main() -> list[DetectResult]:
        async with AsyncDetectorClient(server.url) as client:
            assert await client.ready()
            assert (await client.model()).name == MODEL
            jobs = [client.detect(jpeg(w, 240), score_threshold=0.0, max_detections=4)
                    for w in (200, 320, 400)]  # fmt: skip
            results = await asyncio.gather(*jobs)
            batch = await client.detect_batch([jpeg()], classes=["dog"], score_threshold=0.0)
            assert isinstance(batch[0], DetectResult)
            assert {d.label for d in batch[0].detections} == {"dog"}
            return list(results)

    results = asyncio.run(main())
    assert [len(r.detections) for r in results] == [4, 4, 4]


def test_sighup_reload_under_load(server: Server, model_file: Path) -> None:
    """Clients keep sending while the file is replaced and SIGHUP is sent (a good file, then a
    corrupt one, then a good one): every request succeeds and /model follows the good files."""
    statuses: Counter[int] = Counter()
    versions: Counter[str] = Counter()
    lock, stop = threading.Lock(), threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/detect", content=jpeg(), headers={"content-type": "image/jpeg"})
                with lock:
                    statuses[r.status_code] += 1
                    if r.status_code == 200:
                        versions[r.json()["model"]["version"]] += 1

    def model_version() -> str:
        version: str = httpx.get(server.url + "/model").json()["version"]
        return version

    def wait_version(v: str) -> None:
        wait_until(lambda: model_version() == v, 30, 0.05, what=f"model never became {v}")

    def served(v: str, n: int = 3) -> None:  # clients got `n` answers from version `v`
        wait_until(lambda: versions[v] >= n, 30, 0.05, what=lambda: f"{v}: {versions}")

    original = model_file.read_bytes()
    first = model_version()
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(load) for _ in range(3)]
        try:
            served(first)
            with_version(model_file, model_file, "2.0.0")
            server.proc.send_signal(signal.SIGHUP)
            wait_version("2.0.0")
            served("2.0.0")
            model_file.write_bytes(b"corrupt")
            server.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "model reload refused" in server.log_path.read_text(), 30, 0.05,
                       what="no log line for the refused file")  # fmt: skip
            assert model_version() == "2.0.0"
            served("2.0.0", versions["2.0.0"] + 3)
            model_file.write_bytes(original)
            with_version(model_file, model_file, "3.0.0")
            server.proc.send_signal(signal.SIGHUP)
            wait_version("3.0.0")
            served("3.0.0", 4)
        finally:
            stop.set()
            for f in futures:
                f.result()
    assert set(statuses) == {200} and statuses[200] > 10, statuses
    assert versions["2.0.0"] > 0 and versions["3.0.0"] > 0, versions
    metrics = httpx.get(server.url + "/metrics").text
    assert f'detector_model_reloads_total{{model="{MODEL}",result="ok"}} 2.0' in metrics
    assert f'detector_model_reloads_total{{model="{MODEL}",result="failed"}} 1.0' in metrics
    assert 'version="3.0.0"' in metrics and 'version="2.0.0"' not in metrics
    refused = [r for r in server.log_records() if r.get("logger") == "service.reload"
               and r["level"] == "error"]  # fmt: skip
    assert len(refused) == 1 and "still serving fcos-tiny 2.0.0" in refused[0]["message"]
