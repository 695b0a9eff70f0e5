"""The `tile` parameter through every route (/detect, /detect/batch, /v2 infer, the client),
DETECTOR_TILE / DETECTOR_MAX_TILES, the timings, Server-Timing and the tile counter; on the real
tiny ONNX model."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bench.attacks.images import jpeg
from export.client import DetectorClient


def _tiles_metric(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('detector_tiles_total{model="fcos-tiny"} '):
            return float(line.split()[1])
    raise AssertionError("no detector_tiles_total")


def test_detect_with_a_grid_counts_and_times_its_tiles(client: TestClient) -> None:
    data = jpeg(800, 600)
    plain = client.post("/detect?score_threshold=0", content=data)
    assert plain.status_code == 200 and plain.json()["image"]["tiles"] == 0
    assert "tiles" not in plain.headers["server-timing"]
    before = _tiles_metric(client)
    r = client.post("/detect?score_threshold=0&tile=2", content=data)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"]["tiles"] == 4 and body["timings_ms"]["tiles"] > 0
    assert "tiles;dur=" in r.headers["server-timing"]
    assert _tiles_metric(client) == before + 4
    for d in body["detections"]:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 <= x2 <= 800 and 0 <= y1 <= y2 <= 600


@pytest.mark.parametrize("value", ["bogus", "0", "99", "-1", "1.5", ""])
def test_invalid_tile_values_are_422(client: TestClient, value: str) -> None:
    r = client.post(f"/detect?tile={value}", content=jpeg())
    assert r.status_code == 422 and "tile" in r.json()["error"]["message"], r.text


def test_batch_and_v2_take_the_parameter(client: TestClient) -> None:
    data = jpeg(640, 480)
    batch = client.post("/detect/batch?tile=2", files=[("image", ("a.jpg", data)),
                                                        ("image", ("b.jpg", data))])  # fmt: skip
    assert batch.status_code == 200, batch.text
    assert [it["result"]["image"]["tiles"] for it in batch.json()["results"]] == [4, 4]
    name = client.get("/model").json()["name"]
    tensor = {"name": "image", "datatype": "BYTES", "shape": [1],
              "data": [base64.b64encode(data).decode()]}  # fmt: skip
    for tile, status in ((2, 200), ("auto", 200), ("x", 422), (True, 422), ([2], 422)):
        body: dict[str, Any] = {"inputs": [tensor], "parameters": {"tile": tile}}
        r = client.post(f"/v2/models/{name}/infer", json=body)
        assert r.status_code == status, (tile, r.text)


def test_settings_default_and_cap(serve: Any) -> None:
    big, small = jpeg(1600, 1200), jpeg(160, 120)  # the tiny model: 128 px input
    with serve(tile="auto", max_tiles=4) as (_, c):
        assert c.post("/detect", content=small).json()["image"]["tiles"] == 0  # auto: no need
        auto = c.post("/detect", content=big).json()["image"]["tiles"]
        assert 1 <= auto <= 4
        assert c.post("/detect?tile=off", content=big).json()["image"]["tiles"] == 0
        assert 1 <= c.post("/detect?tile=8", content=big).json()["image"]["tiles"] <= 4  # cap
    with pytest.raises(ValueError, match="tile"):
        serve(tile="sometimes").__enter__()


def test_the_client_passes_tile(client: TestClient) -> None:
    api = DetectorClient(http=client)
    assert api.detect(jpeg(800, 600), tile=2).tiles == 4
    assert api.detect(jpeg(800, 600)).tiles == 0
    [one] = api.detect_batch([jpeg(800, 600)], tile=2)
    assert not isinstance(one, Exception) and one.tiles == 4
