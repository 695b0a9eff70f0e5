"""export.client against the in-process app (its `http=` hook takes the TestClient), its
input forms and error parsing, the model repository (`models()`, `model(name)`, `model=` on
calls and on the client), and that it stays torch-free."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from bench.attacks.images import jpeg
from export.client import (
    AsyncDetectorClient,
    DetectorAPIError,
    DetectorClient,
    DetectResult,
    ModelInfo,
    ModelStatus,
    error_from,
    read_image,
)
from export.client_types import parse_model, parse_status
from service.stages import STAGES
from tests import TINY_CLASSES, wait_until

REPO = Path(__file__).resolve().parents[2]


def test_detect_from_bytes_path_and_file_object(client: TestClient, tmp_path: Path) -> None:
    data = jpeg(320, 240)
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    api = DetectorClient(http=client)
    results = [api.detect(x, score_threshold=0.0, max_detections=7)
               for x in (data, path, str(path), io.BytesIO(data))]  # fmt: skip
    assert all(isinstance(r, DetectResult) for r in results)
    assert len({tuple(r.detections) for r in results}) == 1 and len(results[0].detections) == 7
    r = results[0]
    raw = client.post("/detect?score_threshold=0&max_detections=7", content=data).json()
    assert [d.box for d in r.detections] == [tuple(d["box"]) for d in raw["detections"]]
    assert (r.width, r.height, r.model_name) == (320, 240, "fcos-tiny")
    assert set(r.timings_ms) == set(STAGES)  # every stage, 0 where it did not run
    assert api.model().classes == list(TINY_CLASSES) and api.ready()


def test_errors_are_typed(client: TestClient) -> None:
    api = DetectorClient(http=client)
    with pytest.raises(DetectorAPIError) as err:
        api.detect(b"")
    assert (err.value.status, err.value.code) == (400, "empty_input")
    with pytest.raises(DetectorAPIError, match="422 invalid_parameter"):
        api.detect_batch([jpeg()], classes=["cat", "horse"])
    items = api.detect_batch([b"", jpeg()])
    assert isinstance(items[0], DetectorAPIError) and items[0].code == "empty_input"
    assert isinstance(items[1], DetectResult)


def test_error_parsing_of_other_shapes() -> None:
    req = httpx.Request("GET", "http://x/")
    e = error_from(httpx.Response(503, json={"error": "v2 style"}, headers={"retry-after": "2"},
                                  request=req))  # fmt: skip
    assert (e.status, e.code, e.message, e.retry_after) == (503, "error", "v2 style", 2.0)
    e = error_from(httpx.Response(502, text="<html>bad gateway</html>", request=req))
    assert (e.code, e.message) == ("http_error", "<html>bad gateway</html>")
    assert read_image(b"abc") == b"abc"


def test_client_is_torch_free() -> None:
    code = ("import sys; sys.modules['torch'] = None; import export.client; "
            "assert 'service' not in sys.modules")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def two_models(tiny_onnx_path: Path, tmp_path: Path) -> Path:
    """A repository: the tiny model as `default` and as `birds` (Triton layout, version 3),
    and `broken.onnx`, which is no model (it fails to load)."""
    folder = tmp_path / "models"
    (folder / "birds" / "3").mkdir(parents=True)
    shutil.copy(tiny_onnx_path, folder / "default.onnx")
    shutil.copy(tiny_onnx_path, folder / "birds" / "3" / "model.onnx")
    (folder / "broken.onnx").write_bytes(b"not an onnx model")
    return folder


def settled(api: DetectorClient) -> dict[str, ModelStatus]:
    """The models by name once none is loading."""

    def listing() -> dict[str, ModelStatus] | None:
        found = {m.name: m for m in api.models()}
        return None if any(m.state == "loading" for m in found.values()) else found

    result: dict[str, ModelStatus] = wait_until(listing, 30, what="models still loading")
    return result


def test_models_are_listed_described_and_picked(serve: Any, two_models: Path) -> None:
    with serve(model_dir=two_models) as (_, c):
        api = DetectorClient(http=c)
        models = settled(api)
        assert list(models) == ["birds", "broken", "default"]
        birds, broken = models["birds"], models["broken"]
        assert birds.ready and (birds.version, birds.file, birds.classes) == (
            "3", "model.onnx", list(TINY_CLASSES))  # fmt: skip
        assert (birds.backend, birds.precision, birds.input_size) == ("onnxruntime", "fp32", 128)
        assert birds.exported_name == "fcos-tiny" and birds.load_ms > 0
        assert not broken.ready and broken.state == "failed" and broken.reason
        assert broken.classes == [] and broken.preset is None and broken.file == "broken.onnx"

        default = api.model()  # GET /model: the service's default model
        assert isinstance(default, ModelInfo) and (default.name, default.exported_name) == (
            "default", "fcos-tiny")  # fmt: skip
        assert default.score_threshold == pytest.approx(0.4)
        info = api.model("birds")  # GET /models/birds
        assert (info.name, info.version, info.classes, info.input_size) == (
            "birds", "3", list(TINY_CLASSES), 128)  # fmt: skip
        assert info.preset == default.preset and info.score_threshold is None
        with pytest.raises(DetectorAPIError) as err:
            api.model("broken")
        assert (err.value.status, err.value.code) == (503, "not_ready")
        assert "broken is failed" in err.value.message
        with pytest.raises(DetectorAPIError) as err:
            api.model("cats")
        assert err.value.status == 404 and "models: birds, broken, default" in err.value.message

        # model= on each call
        image = jpeg(320, 240)
        assert api.detect(image).model_name == "default"
        r = api.detect(image, model="birds", score_threshold=0.0, max_detections=5)
        assert (r.model_name, r.model_version, len(r.detections)) == ("birds", "3", 5)
        batch = api.detect_batch([image, image], model="birds")
        assert [x.model_name for x in batch if isinstance(x, DetectResult)] == ["birds"] * 2
        assert api.annotate(image, model="birds").startswith(b"\xff\xd8")
        for call in (lambda: api.detect(image, model="cats"),
                     lambda: api.detect_batch([image], model="cats"),
                     lambda: api.annotate(image, model="cats")):  # fmt: skip
            with pytest.raises(DetectorAPIError) as err:
                call()
            assert err.value.status == 404 and "unknown model 'cats'" in err.value.message
        with pytest.raises(DetectorAPIError) as err:
            api.detect(image, model="broken")
        assert (err.value.status, err.value.code) == (503, "not_ready")

        # model= on the client: the default of every call (a call's own model= wins)
        picked = DetectorClient(http=c, model="birds")
        assert picked.detect(image).model_name == "birds"
        assert picked.detect(image, model="default").model_name == "default"
        result = picked.detect_batch([image])[0]
        assert isinstance(result, DetectResult) and result.model_name == "birds"
        assert picked.model().name == "birds" and picked.model("default").name == "default"


def _fake_service(seen: list[httpx.Request]) -> httpx.MockTransport:
    """Answers like the service, with fields a newer one might add (they are ignored)."""
    detect = {"detections": [{"label": "cat", "class_id": 0, "score": 0.9, "box": [1, 2, 3, 4],
                              "mask": None}],
              "image": {"width": 8, "height": 6, "tiles": 0},
              "model": {"name": "birds", "version": "3", "family": "fcos"},
              "timings_ms": {"total": 1.0}, "trace": "x"}  # fmt: skip
    entry = {"name": "birds", "version": "3", "state": "ready", "reason": None, "file": "m.onnx",
             "backend": "onnxruntime", "precision": "fp32", "preset": "tiny",
             "exported_name": "fcos-tiny", "classes": ["cat"], "input_size": 128,
             "memory_bytes": 10, "load_ms": 2.5, "last_error": None, "gpu": "none"}  # fmt: skip
    minimal = {"name": "old", "version": None, "state": "loading"}  # an older service's entry

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if path == "/models":
            return httpx.Response(200, json={"default": "birds", "models": [entry, minimal],
                                             "next": None})  # fmt: skip
        if path.startswith("/models/"):
            return httpx.Response(200, json=entry)
        if path == "/detect/batch":
            return httpx.Response(200, json={"results": [{"status": 200, "result": detect}],
                                             "model": detect["model"]})  # fmt: skip
        return httpx.Response(200, json=detect)  # /detect

    return httpx.MockTransport(handle)


def test_async_client_sends_the_model_and_parses_tolerantly() -> None:
    seen: list[httpx.Request] = []
    transport = _fake_service(seen)

    async def run() -> tuple[Any, ...]:
        http = httpx.AsyncClient(transport=transport, base_url="http://svc")
        async with AsyncDetectorClient(http=http, model="birds") as api:
            return (await api.detect(b"x", classes=["cat"]),
                    await api.detect_batch([b"x"], model="cars"),
                    await api.annotate(b"x", model="a/b"),
                    await api.models(), await api.model())  # fmt: skip

    result, batch, _, models, info = asyncio.run(run())
    queries = [dict(r.url.params) for r in seen]
    assert queries[0] == {"model": "birds", "classes": "cat"}
    assert queries[1]["model"] == "cars" and queries[2]["model"] == "a/b"
    assert [r.url.path for r in seen[3:]] == ["/models", "/models/birds"]
    assert isinstance(result, DetectResult) and result.model_name == "birds"
    assert result.detections[0].box == (1, 2, 3, 4) and isinstance(batch[0], DetectResult)
    assert [m.name for m in models] == ["birds", "old"]
    assert models[1] == ModelStatus("old", None, "loading")
    assert (info.name, info.classes, info.exported_name) == ("birds", ["cat"], "fcos-tiny")

    with DetectorClient(http=httpx.Client(transport=transport, base_url="http://svc")) as api:
        api.detect(b"x")  # no model=: the service's default
        assert "model" not in seen[-1].url.params
        api.model("a b/c")  # a name is one path segment, quoted
        assert seen[-1].url.raw_path == b"/models/a%20b%2Fc"


def test_model_parsing_is_tolerant() -> None:
    body = {"name": "default", "version": "1", "preset": "tiny", "precision": "int8",
            "classes": ["a"], "input_size": 128, "strides": [8], "something_new": True}  # fmt: skip
    assert parse_model(body) == ModelInfo("default", "1", "tiny", "int8", ["a"], 128)
    status = parse_status(json.loads('{"name": "x", "version": "2", "state": "refused", '
                                     '"reason": "DETECTOR_MAX_MODELS", "extra": [1]}'))  # fmt: skip
    assert (status.state, status.reason, status.ready, status.memory_bytes) == (
        "refused", "DETECTOR_MAX_MODELS", False, 0)  # fmt: skip
