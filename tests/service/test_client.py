"""export.client against the in-process app (its `http=` hook takes the TestClient), its
input forms and error parsing, and that it stays torch-free."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from bench.attacks.images import jpeg
from export.client import (
    DetectorAPIError,
    DetectorClient,
    DetectResult,
    error_from,
    read_image,
)
from service.stages import STAGES
from tests import TINY_CLASSES

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
