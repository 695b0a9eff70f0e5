"""The Open Inference Protocol routes (/v2) in process: metadata, health, JSON and binary
(Triton's extension) tensors, the padded outputs, and errors as `{"error": "..."}`."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bench.attacks.images import jpeg, png
from service.oip import pack_bytes_tensor, unpack_bytes_tensor

MODEL = "fcos-tiny"  # export_onnx's default name for the tiny test model
PARAMS = {"score_threshold": 0.0, "max_detections": 20}


def infer_json(images: list[bytes], **extra: Any) -> dict[str, Any]:
    data = [base64.b64encode(im).decode() for im in images]
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)],
                        "data": data}], "parameters": dict(PARAMS), **extra}  # fmt: skip


def decode_binary(body: bytes, header_len: int) -> dict[str, np.ndarray]:
    doc, blob, out, pos = json.loads(body[:header_len]), body[header_len:], {}, 0
    for o in doc["outputs"]:
        if "data" in o:  # this output was asked for as JSON
            continue
        size = o["parameters"]["binary_data_size"]
        raw = blob[pos : pos + size]
        pos += size
        if o["datatype"] == "BYTES":
            out[o["name"]] = np.array(unpack_bytes_tensor(raw), dtype=object).reshape(o["shape"])
        else:
            dtype = {"FP32": "<f4", "INT64": "<i8", "INT32": "<i4"}[o["datatype"]]
            out[o["name"]] = np.frombuffer(raw, dtype).reshape(o["shape"])
    return out


def test_server_and_model_metadata(client: TestClient) -> None:
    assert client.get("/v2").json()["extensions"] == ["binary_tensor_data", "model_repository"]
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get(f"/v2/models/{MODEL}").json()
    version = meta["versions"][0]
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in meta["outputs"]] == [
        "num_detections", "boxes", "scores", "class_ids", "class_names"]  # fmt: skip
    assert client.get(f"/v2/models/{MODEL}/versions/{version}").json() == meta
    assert client.get(f"/v2/models/{MODEL}/ready").json() == {"ready": True}
    assert client.get(f"/v2/models/{MODEL}/versions/{version}/ready").status_code == 200
    for path in ("/v2/models/other", f"/v2/models/{MODEL}/versions/9.9/ready"):
        r = client.get(path)
        assert r.status_code == 404 and "fcos-tiny" in r.json()["error"], path


def test_json_infer_matches_detect(client: TestClient) -> None:
    a, b = jpeg(320, 240), png(100, 200)
    r = client.post(f"/v2/models/{MODEL}/infer", json=infer_json([a, b], id="req-7"))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["id"] == "req-7" and doc["model_name"] == MODEL
    out = {o["name"]: o for o in doc["outputs"]}
    n = out["num_detections"]["data"]
    k = max(n)
    assert out["boxes"]["shape"] == [2, k, 4] and out["class_names"]["shape"] == [2, k]
    boxes = np.array(out["boxes"]["data"]).reshape(2, k, 4)
    names = np.array(out["class_names"]["data"], dtype=object).reshape(2, k)
    ids = np.array(out["class_ids"]["data"]).reshape(2, k)
    for i, img in enumerate((a, b)):
        ref = client.post("/detect?score_threshold=0&max_detections=20", content=img).json()
        dets = ref["detections"]
        assert n[i] == len(dets)
        assert list(names[i, : n[i]]) == [d["label"] for d in dets]
        np.testing.assert_allclose(boxes[i, : n[i]], [d["box"] for d in dets], atol=0.06)
        assert (ids[i, n[i] :] == -1).all() and set(names[i, n[i] :]) <= {""}


def test_binary_request_and_outputs(client: TestClient) -> None:
    a = jpeg(320, 240)
    blob = pack_bytes_tensor([a])
    header = json.dumps({
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1, 1],
                    "parameters": {"binary_data_size": len(blob)}}],
        "outputs": [{"name": "scores", "parameters": {"binary_data": True}},
                    {"name": "class_names", "parameters": {"binary_data": True}},
                    {"name": "num_detections"}],
        "parameters": {**PARAMS, "classes": "dog,cat"},
    }).encode()  # fmt: skip
    r = client.post(f"/v2/models/{MODEL}/infer", content=header + blob,
                    headers={"inference-header-content-length": str(len(header)),
                             "content-type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 200, r.text
    hlen = int(r.headers["inference-header-content-length"])
    out = decode_binary(r.content, hlen)
    doc = json.loads(r.content[:hlen])
    assert [o["name"] for o in doc["outputs"]] == ["scores", "class_names", "num_detections"]
    assert doc["outputs"][2]["data"] == [out["scores"].shape[1]]
    assert set(out["class_names"].ravel()) <= {b"dog", b"cat"} and out["scores"].shape[1] > 0
    assert (np.diff(out["scores"][0]) <= 0).all()


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"inputs": []}, 400, "one input"),
        ({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["AA=="]}]}, 400,
         "named 'image'"),
        ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["AA=="]}]}, 400,
         "but 1 elements"),
        ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1, 3], "data": ["A"]}]}, 400,
         "shape must be"),
        ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [0], "data": []}]}, 422,
         "no elements"),
        ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1]}]}, 400, "neither"),
        ({**infer_json([b"text"])}, 415, "image[0]"),
        ({**infer_json([jpeg()]), "parameters": {"classes": "unicorn"}}, 422, "unicorn"),
        ({**infer_json([jpeg()]), "parameters": {"score_threshold": "high"}}, 422,
         "score_threshold"),
        ({**infer_json([jpeg()]), "outputs": [{"name": "masks"}]}, 400, "unknown output"),
        ("not an object", 400, "inputs"),
    ],
)  # fmt: skip
def test_infer_errors(client: TestClient, body: Any, status: int, needle: str) -> None:
    r = client.post(f"/v2/models/{MODEL}/infer", json=body)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["error"], str) and needle in r.json()["error"]


def test_limits_and_not_ready(serve: Any) -> None:
    with serve(max_batch_images=2) as (_, client):
        r = client.post(f"/v2/models/{MODEL}/infer", json=infer_json([jpeg()] * 3))
        assert r.status_code == 413 and "limit is 2" in r.json()["error"]
        r = client.post(f"/v2/models/{MODEL}/infer", content=b"{}",
                        headers={"inference-header-content-length": "99"})  # fmt: skip
        assert r.status_code == 400
    with serve(model_path="/nonexistent.onnx", ready=False) as (_, client):
        assert client.get("/v2/health/live").status_code == 200
        r = client.get("/v2/health/ready")
        assert r.status_code == 503 and r.json() == {"ready": False}
        r = client.post("/v2/models/nonexistent/infer", json=infer_json([jpeg()]))
        assert r.status_code == 503 and "not ready" in r.json()["error"]
        r = client.post(f"/v2/models/{MODEL}/infer", json=infer_json([jpeg()]))
        assert r.status_code == 404 and "models: nonexistent" in r.json()["error"]
