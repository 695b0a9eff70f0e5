"""The DeepStack / CodeProject.AI compatible routes (service/routes/deepstack.py) driven by the
real clients from PyPI (`deepstack-python`, `codeproject-ai-api`) and by a replay of Frigate's
`deepstack` detector plugin, against `python -m service` as a real process serving a
repository of two models; the edge cases and the body path in-process."""

from __future__ import annotations

import base64
import io
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from bench.attacks.images import jpeg
from bench.attacks.server import REPO, Server, ready_server
from service.app import create_app
from service.settings import Settings
from tests import TINY_CLASSES, wait_until
from tests.service.test_metrics import scrape
from tests.service.test_metrics import value as sample

# A default threshold of the server's own (DETECTOR_SCORE_THRESHOLD) that the random tiny model
# passes a few times, and a cap on detections Frigate's plugin can take (its 20 rows).
SERVER_THRESHOLD = 0.05
SERVER_MAX_DETECTIONS = 20


@pytest.fixture(scope="module")
def repo(tiny_onnx_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    for name in ("default", "birds"):
        shutil.copy(tiny_onnx_path, folder / f"{name}.onnx")
    return folder


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with ready_server(tmp_path_factory.mktemp("srv"), repo / "default.onnx",
                      DETECTOR_MODEL_DIR=str(repo), DETECTOR_SCORE_THRESHOLD=str(SERVER_THRESHOLD),
                      DETECTOR_MAX_DETECTIONS=str(SERVER_MAX_DETECTIONS)) as srv:  # fmt: skip
        def states() -> dict[str, str]:
            return {m["name"]: m["state"] for m in httpx.get(srv.url + "/models").json()["models"]}

        wanted = {"birds": "ready", "default": "ready"}
        wait_until(lambda: states() == wanted, 60, 0.05, what=states)  # ready: the default only
        yield srv


def reference(server: Server, image: bytes, model: str = "default", **params: Any) -> list[dict]:
    """What POST /detect answers for the same image."""
    r = httpx.post(f"{server.url}/detect", params={"model": model, **params}, content=image,
                   headers={"content-type": "image/jpeg"}, timeout=30)  # fmt: skip
    assert r.status_code == 200, r.text
    detections: list[dict] = r.json()["detections"]
    return detections


def assert_same(predictions: list[dict], detections: list[dict]) -> None:
    """DeepStack's predictions are /detect's detections: labels, confidences and the boxes
    truncated to integer pixels (/detect rounds its float boxes to 0.1 px, so the truncation of
    the unrounded box lies between those of box - 0.05 and box + 0.05)."""
    assert len(predictions) == len(detections) > 0
    for p, d in zip(predictions, detections, strict=True):
        assert set(p) == {"label", "confidence", "x_min", "y_min", "x_max", "y_max"}
        assert p["label"] == d["label"] and p["confidence"] == pytest.approx(d["score"], abs=6e-5)
        ints = [p["x_min"], p["y_min"], p["x_max"], p["y_max"]]
        assert all(isinstance(v, int) for v in ints)
        for i, b in zip(ints, d["box"], strict=True):
            assert math.floor(b - 0.05) <= i <= math.floor(b + 0.05), (ints, d["box"])
    confidences = [p["confidence"] for p in predictions]
    assert confidences == sorted(confidences, reverse=True)  # highest first


def test_this_repos_tests_package_wins() -> None:
    """deepstack-python and codeproject-ai-api install a top-level `tests` package of their own
    into site-packages: the repository's must still be the one imported."""
    import tests

    assert Path(tests.__file__).resolve().is_relative_to(REPO), tests.__file__


def test_deepstack_python_client(server: Server) -> None:
    core = pytest.importorskip("deepstack.core", reason="pip install deepstack-python")
    image = jpeg(320, 240)
    default = core.DeepstackObject(ip="127.0.0.1", port=server.port, min_confidence=0.0)
    assert_same(default.detect(image), reference(server, image, score_threshold=0))
    birds = core.DeepstackObject(ip="127.0.0.1", port=server.port, min_confidence=0.0,
                                 custom_model="birds")  # fmt: skip
    assert_same(birds.detect(image), reference(server, image, "birds", score_threshold=0))
    with pytest.raises(core.DeepstackException, match="404"):
        core.DeepstackObject(ip="127.0.0.1", port=server.port, custom_model="owls").detect(image)
    with pytest.raises(core.DeepstackException, match="status code: 415"):
        default.detect(b"not an image")


def test_codeproject_ai_client(server: Server) -> None:
    core = pytest.importorskip("codeprojectai.core", reason="pip install codeproject-ai-api")
    image = jpeg(200, 300)
    cpai = core.CodeProjectAIObject(ip="127.0.0.1", port=server.port, min_confidence=0.0)
    assert_same(cpai.detect(image), reference(server, image, score_threshold=0))
    birds = core.CodeProjectAIObject(ip="127.0.0.1", port=server.port, min_confidence=0.0,
                                     custom_model="birds")  # fmt: skip
    assert_same(birds.detect(image), reference(server, image, "birds", score_threshold=0))
    owls = core.CodeProjectAIObject(ip="127.0.0.1", port=server.port, custom_model="owls")
    with pytest.raises(core.CodeProjectAIException, match="404"):
        owls.detect(image)


def test_answer_shape_and_truncated_boxes(server: Server) -> None:
    """CodeProject.AI's fields, and boxes exactly int() of the model's float32 boxes (as /v2
    answers them, unrounded)."""
    image = jpeg(300, 200)
    r = httpx.post(server.url + "/v1/vision/custom/birds", files={"image": image},
                   data={"min_confidence": "0", "api_key": "", "unknown": "ignored"},
                   timeout=30)  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    predictions = body.pop("predictions")
    assert body["success"] is True and body["code"] == 200 and body["command"] == "custom"
    assert body["count"] == len(predictions) == SERVER_MAX_DETECTIONS
    assert body["message"] == "Found " + ", ".join(p["label"] for p in predictions[:3]) + "..."
    assert body["moduleId"] == "fcos-detector" and body["requestId"] == r.headers["x-request-id"]
    assert body["model"] == "birds" and body["modelVersion"]
    assert 0 <= body["inferenceMs"] <= body["processMs"] <= body["analysisRoundTripMs"]
    infer = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                         "data": [base64.b64encode(image).decode()]}],
             "parameters": {"score_threshold": 0.0}}  # fmt: skip
    outputs = httpx.post(server.url + "/v2/models/birds/infer", json=infer, timeout=30).json()
    tensors = {o["name"]: o["data"] for o in outputs["outputs"]}
    boxes = np.array(tensors["boxes"], np.float32).reshape(-1, 4)[: len(predictions)]
    got = [[p["x_min"], p["y_min"], p["x_max"], p["y_max"]] for p in predictions]
    assert got == [[int(float(v)) for v in box] for box in boxes]
    assert [p["label"] for p in predictions] == tensors["class_names"][: len(predictions)]


def test_min_confidence_default_is_the_servers_threshold(server: Server) -> None:
    image = jpeg(320, 240)
    r = httpx.post(server.url + "/v1/vision/detection", files={"image": image}, timeout=30)
    predictions = r.json()["predictions"]
    assert all(p["confidence"] >= SERVER_THRESHOLD for p in predictions)
    assert_same(predictions, reference(server, image))  # /detect's default: the same threshold
    empty = httpx.post(server.url + "/v1/vision/detection", files={"image": image},
                       data={"min_confidence": ""}, timeout=30)  # fmt: skip
    assert empty.json()["predictions"] == predictions  # empty = absent, as DeepStack
    none = httpx.post(server.url + "/v1/vision/detection", files={"image": image},
                      data={"min_confidence": "1"}, timeout=30).json()  # fmt: skip
    assert none["predictions"] == [] and none["count"] == 0
    assert none["message"] == "No objects found"


class FrigateDeepStack:
    """Frigate's `deepstack` detector, copied from blakeblackshear/frigate
    frigate/detectors/plugins/deepstack.py (DeepStack.detect_raw and get_label_index): the
    frame as a JPEG in `files={"image": ...}`, `data={"api_key": ...}`, a timeout, then
    `response_json["predictions"]` read into 20 rows of [label index, confidence, y_min/h,
    x_min/w, y_max/h, x_max/w]. `min_score` is the plugin's literal 0.4 cut, a parameter here
    only because the random tiny model scores below it."""

    def __init__(self, api_url: str, api_key: str = "", api_timeout: float = 10.0,
                 labels: dict[int, str] | None = None, min_score: float = 0.4) -> None:  # fmt: skip
        self.api_url, self.api_key, self.api_timeout = api_url, api_key, api_timeout
        self.labels = labels if labels is not None else dict(enumerate(TINY_CLASSES))
        self.min_score = min_score

    def get_label_index(self, label_value: str) -> int:
        if label_value.lower() == "truck":
            label_value = "car"
        for index, value in self.labels.items():
            if value == label_value.lower():
                return index
        return -1

    def detect_raw(self, tensor_input: np.ndarray) -> np.ndarray:
        requests = pytest.importorskip("requests")
        image_data = np.squeeze(tensor_input).astype(np.uint8)
        image = Image.fromarray(image_data)
        self.w, self.h = image.size
        with io.BytesIO() as output:
            image.save(output, format="JPEG")
            image_bytes = output.getvalue()
        data = {"api_key": self.api_key}
        response = requests.post(self.api_url, data=data, files={"image": image_bytes},
                                 timeout=self.api_timeout)  # fmt: skip
        response_json = response.json()
        detections = np.zeros((20, 6), np.float32)
        if response_json.get("predictions") is None:
            return detections
        for i, detection in enumerate(response_json.get("predictions")):
            if detection["confidence"] < self.min_score:
                break
            label = self.get_label_index(detection["label"])
            if label < 0:
                break
            detections[i] = [
                label,
                float(detection["confidence"]),
                detection["y_min"] / self.h,
                detection["x_min"] / self.w,
                detection["y_max"] / self.h,
                detection["x_max"] / self.w,
            ]
        return detections


def test_frigate_deepstack_plugin_reads_our_answer(server: Server) -> None:
    frame = np.asarray(Image.open(io.BytesIO(jpeg(320, 320))).convert("RGB"))[None]  # NHWC
    url = server.url + "/v1/vision/detection"
    rows = FrigateDeepStack(url, min_score=SERVER_THRESHOLD).detect_raw(frame)
    with io.BytesIO() as sent:  # the frame as the plugin sends it: what /detect must see too
        Image.fromarray(frame[0]).save(sent, format="JPEG")
        expected = reference(server, sent.getvalue())
    assert 0 < len(expected) <= 20
    got = rows[: len(expected)]
    assert not rows[len(expected):].any()  # fmt: skip
    assert [TINY_CLASSES[int(c)] for c in got[:, 0]] == [d["label"] for d in expected]
    np.testing.assert_allclose(got[:, 1], [d["score"] for d in expected], atol=6e-5)
    boxes = np.array([d["box"] for d in expected])  # x1 y1 x2 y2 -> y1/h x1/w y2/h x2/w
    np.testing.assert_allclose(got[:, 2:], boxes[:, [1, 0, 3, 2]] / 320, atol=1.1 / 320)
    # the plugin as shipped (its 0.4 cut) stops at the first, weaker prediction: no rows
    assert not FrigateDeepStack(url).detect_raw(frame).any()


def test_errors_in_deepstacks_shape(server: Server) -> None:
    image = jpeg(64, 64)
    cases = [
        ("/v1/vision/custom/owls", {"files": {"image": image}}, 404, "models: birds, default"),
        ("/v1/vision/detection", {"files": {"image": b"junk"}}, 415, "not an image"),
        ("/v1/vision/detection", {"files": {"picture": image}}, 400, "field 'image'"),
        ("/v1/vision/detection", {"files": {"image": image}, "data": {"min_confidence": "x"}},
         400, "min_confidence"),
        ("/v1/vision/detection", {"content": image, "headers": {"content-type": "image/jpeg"}},
         415, "multipart/form-data"),
    ]  # fmt: skip
    for path, kw, status, text in cases:
        r = httpx.post(server.url + path, timeout=30, **kw)
        body = r.json()
        assert r.status_code == status and set(body) == {"success", "error", "code"}, r.text
        assert body["success"] is False and body["code"] == status and text in body["error"]


def test_metrics_count_the_deepstack_route(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        before = scrape(c)
        assert c.post("/v1/vision/custom/birds", files={"image": jpeg()}).status_code == 200
        assert c.post("/v1/vision/detection", files={"image": b"junk"}).status_code == 415
        after = scrape(c)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    ok = {"model": "birds", "route": "deepstack", "outcome": "ok"}
    assert delta("detector_requests_total", **ok) == 1
    bad = {"model": "default", "route": "deepstack", "outcome": "unsupported_media_type"}
    assert delta("detector_requests_total", **bad) == 1
    assert delta("detector_detections_per_image_count", model="birds") == 1


# --- in-process: the body path and its limits ---------------------------------------------


def test_body_limits_and_odd_forms(serve: Any) -> None:
    with serve(max_upload_bytes=20_000) as (_, c):
        small = jpeg(64, 64)
        cases = [
            ({"files": {"image": jpeg(200, 200)}}, 413),  # the image over the limit ...
            ({"files": {"image": jpeg(640, 480)}}, 413),  # ... and the whole body too
            ({"content": b"x" * 200_000,
              "headers": {"content-type": "multipart/form-data; boundary=b"}}, 413),
            ({"files": [("image", small), ("image", small)]}, 422),  # one image per request
            ({"files": {"image": small}, "data": {"min_confidence": ["0.1", "0.2"]}}, 400),
            ({"files": {"image": small}, "data": {"min_confidence": "1.5"}}, 400),
            ({"files": {"image": small}, "data": {"min_confidence": "nan"}}, 400),
            ({"content": b"--b\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nab",
              "headers": {"content-type": "multipart/form-data; boundary=b"}}, 400),
            ({"content": b"", "headers": {"content-type": "multipart/form-data"}}, 400),
            ({"files": [(f"f{i}", b"x") for i in range(20)] + [("image", small)]}, 400),
            ({"files": {"image": small}, "data": {"min_confidence": " 0.25 ", "x": "y"}}, 200),
        ]  # fmt: skip
        for kw, status in cases:
            r = c.post("/v1/vision/detection", **kw)
            assert r.status_code == status, (kw.get("data"), r.text)
            assert r.json()["success"] is (status == 200)
            if status != 200:
                assert r.json()["code"] == status
        assert c.post("/v1/vision/custom/fcos-tiny", files={"image": small}).status_code == 200


def test_memory_budget_503_with_retry_after(serve: Any) -> None:
    with serve(max_upload_memory_bytes=20_000) as (app, c):
        r = c.post("/v1/vision/detection", files={"image": jpeg(640, 480)})
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert r.json()["success"] is False and r.json()["code"] == 503
        assert app.state.engine.upload_budget.used == 0
        assert c.post("/v1/vision/detection", files={"image": jpeg(32, 32)}).status_code == 200


def test_openapi_documents_the_routes() -> None:
    paths = create_app(Settings(model_path="unused.onnx")).openapi()["paths"]
    for path in ("/v1/vision/detection", "/v1/vision/custom/{model}"):
        op = paths[path]["post"]
        assert "DeepStack" in op["summary"]
        schema = op["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert set(schema["properties"]) == {"image", "min_confidence", "api_key"}
        assert schema["required"] == ["image"]
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"].endswith("/DeepStackResponse")
        for status in ("400", "401", "404", "413", "415", "503"):
            assert op["responses"][status]["content"]["application/json"]["schema"][
                "$ref"].endswith("/DeepStackError")  # fmt: skip
