"""Capture (DETECTOR_CAPTURE_DIR): off by default; the files of each route (image bytes, YOLO
pre-labels, sidecar); the policy (unsure band, empty, sample, per-minute cap); drops on a full
queue or a disk error that never touch the response; the disk budget."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from bench.attacks.images import jpeg, png
from export.postprocess import Detections
from export.runtime import DetectionResult
from service.capture import Capture
from service.capture_layout import CaptureItem, capture_files, sniff_format, yolo_lines
from service.capture_store import CaptureStore
from service.metrics import Metrics
from service.oip import pack_bytes_tensor
from service.settings import Settings
from tests import TINY_CLASSES, wait_until

MODEL = "fcos-tiny"
NO_BAND = {"capture_unsure_low": 0.0, "capture_unsure_high": 0.0}  # no unsure band
EVERY = {"capture_sample_rate": 1.0, "capture_empty": False, **NO_BAND}  # sample everything
WHEN = datetime(2026, 12, 7, 14, 31, 26, 123000, tzinfo=timezone.utc)


def count(app_or_metrics: Any, result: str, model: str = MODEL) -> float:
    metrics = getattr(getattr(app_or_metrics, "state", None), "metrics", app_or_metrics)
    value = metrics.registry.get_sample_value(
        "detector_captures_total", {"model": model, "result": result}
    )
    return value or 0.0


def captures(root: Path) -> list[Path]:
    """The sidecars (complete captures) under `root`."""
    return sorted(root.glob("*/*/*.json"))


def check_capture(sidecar_path: Path, data: bytes, route: str, boxes: list[list[float]],
                  width: int, height: int) -> dict[str, Any]:  # fmt: skip
    """The triple of `data` is as specified; `boxes` (pixels, rounded to 0.1 by the response)
    give the expected YOLO lines. Returns the sidecar."""
    sha = hashlib.sha256(data).hexdigest()
    stem = sha[:16]
    folder = sidecar_path.parent
    assert sidecar_path.name == f"{stem}.json"
    assert folder.parent.name == MODEL and folder.name == "2026-12-07"
    ext = {"jpeg": "jpg", "png": "png"}[sniff_format(data)[0]]
    assert (folder / f"{stem}.{ext}").read_bytes() == data
    doc = json.loads(sidecar_path.read_text())
    assert doc["schema"] == 1 and doc["route"] == route and doc["reason"] == "sample"
    assert doc["model"]["name"] == MODEL and isinstance(doc["model"]["version"], str)
    assert doc["time"] == "2026-12-07T14:31:26.123Z"
    assert doc["image"] == {"width": width, "height": height, "format": sniff_format(data)[0],
                            "sha256": sha, "bytes": len(data)}  # fmt: skip
    assert doc["classes"] == list(TINY_CLASSES)
    assert {"score_threshold", "max_detections", "tile", "classes"} <= set(doc["thresholds"])
    assert len(doc["detections"]) == len(boxes) > 0
    for det in doc["detections"]:
        assert det["label"] == TINY_CLASSES[det["class_id"]] and 0 <= det["score"] <= 1
    lines = (folder / f"{stem}.txt").read_text().splitlines()
    assert len(lines) == len(boxes)
    for line, (x1, y1, x2, y2), det in zip(lines, boxes, doc["detections"], strict=True):
        c, *vals = line.split()
        assert int(c) == det["class_id"]
        assert all(len(v.split(".")[1]) == 6 for v in vals)  # 6 decimals
        expected = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width,
                    (y2 - y1) / height]  # fmt: skip
        np.testing.assert_allclose([float(v) for v in vals], expected, atol=0.06 / min(width,
                                   height) + 1e-6)  # fmt: skip
        assert all(0.0 <= float(v) <= 1.0 for v in vals)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files
    return doc


def fixed_time(app: Any) -> None:
    app.state.capture.now = lambda: WHEN


def test_off_by_default(serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings().capture_dir is None
    with serve(score_threshold=0.0) as (app, c):
        assert c.post("/detect", content=jpeg(64, 48)).status_code == 200
        capture = app.state.capture
        assert not capture.enabled and capture._thread is None and capture.queue.empty()
    assert list(tmp_path.iterdir()) == []
    assert count(app, "saved") == 0


def test_every_route_writes_the_triple(serve: Any, tmp_path: Path) -> None:
    root = tmp_path / "captures"
    with serve(capture_dir=root, max_detections=5, **EVERY) as (app, c):
        fixed_time(app)
        a, b, d, v = jpeg(320, 240), png(100, 60), jpeg(200, 150), jpeg(90, 120)
        r = c.post("/detect?score_threshold=0", content=a)
        assert r.status_code == 200, r.text
        expect = {a: ("detect", [x["box"] for x in r.json()["detections"]], 320, 240)}

        parts = [("image", ("b.png", b, "image/png")), ("image", ("a.jpg", a, "image/jpeg"))]
        r = c.post("/detect/batch?score_threshold=0", files=parts)
        assert r.status_code == 200, r.text
        res = r.json()["results"][0]["result"]
        expect[b] = ("batch", [x["box"] for x in res["detections"]], 100, 60)

        r = c.post("/v1/vision/detection", files={"image": ("d.jpg", d, "image/jpeg")},
                   data={"min_confidence": "0"})  # fmt: skip
        assert r.status_code == 200, r.text
        n_preds = r.json()["count"]

        blob = pack_bytes_tensor([v])
        header = json.dumps({
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                        "parameters": {"binary_data_size": len(blob)}}],
            "parameters": {"score_threshold": 0.0, "max_detections": 5},
        }).encode()  # fmt: skip
        r = c.post(f"/v2/models/{MODEL}/infer", content=header + blob,
                   headers={"inference-header-content-length": str(len(header)),
                            "content-type": "application/octet-stream"})  # fmt: skip
        assert r.status_code == 200, r.text
        boxes_v2 = json.loads(r.content)["outputs"]
        boxes_v2 = next(o for o in boxes_v2 if o["name"] == "boxes")["data"]
        expect[v] = ("v2", np.array(boxes_v2).reshape(-1, 4).tolist(), 90, 120)

        wait_until(lambda: count(app, "saved") == 5, what=lambda: captures(root))
    by_sha = {p.stem: p for p in captures(root)}
    assert len(by_sha) == 4  # the batch's copy of `a` is the same capture as /detect's
    for data, (route, boxes, w, h) in expect.items():
        sidecar_path = by_sha[hashlib.sha256(data).hexdigest()[:16]]
        if route == "detect":  # /detect/batch sent it again: the later labels replace these
            route = "batch"
        check_capture(sidecar_path, data, route, boxes, w, h)
    doc = json.loads(by_sha[hashlib.sha256(d).hexdigest()[:16]].read_text())
    assert doc["route"] == "deepstack" and len(doc["detections"]) == n_preds == 5
    assert doc["thresholds"]["score_threshold"] == 0.0


def test_empty_and_unsure(serve: Any, tmp_path: Path) -> None:
    """The untrained tiny model scores ~0.08: nothing at the 0.4 default (empty), all of it
    in a [0, 0.5) band at threshold 0 (unsure), none in [0.5, 0.9)."""
    root = tmp_path / "c"
    with serve(capture_dir=root, capture_unsure_low=0.0, capture_unsure_high=0.5) as (_, c):
        c.post("/detect", content=jpeg(64, 48))
        c.post("/detect?score_threshold=0", content=jpeg(72, 48))
        wait_until(lambda: len(captures(root)) == 2)
        reasons = sorted(json.loads(p.read_text())["reason"] for p in captures(root))
        assert reasons == ["empty", "unsure"]
        empty = next(p for p in captures(root) if json.loads(p.read_text())["reason"] == "empty")
        assert empty.with_suffix(".txt").read_text() == ""

    band = {"capture_unsure_low": 0.5, "capture_unsure_high": 0.9}
    capture = Capture(Settings(capture_dir=root, capture_empty=False, **band), Metrics())
    assert capture.reason(result([0.3, 0.1])) is None
    assert capture.reason(result([0.5])) == "unsure"
    assert capture.reason(result([0.95])) is None
    assert capture.reason(result([])) is None
    capture.rng = lambda: 0.3
    capture.settings = Settings(capture_dir=root, capture_sample_rate=0.5, **NO_BAND)
    assert capture.reason(result([0.3])) == "sample"
    assert capture.reason(result([])) == "empty"
    capture.rng = lambda: 0.7
    assert capture.reason(result([0.3])) is None


def result(scores: list[float], width: int = 100, height: int = 50) -> DetectionResult:
    n = len(scores)
    boxes = np.tile(np.array([[10, 5, 30, 25]], np.float32), (n, 1))
    return DetectionResult(Detections(boxes, np.array(scores, np.float32),
                                      np.zeros(n, np.int64)), width, height)  # fmt: skip


def offer(capture: Capture, data: bytes = b"\xff\xd8\xffdata", model: str = MODEL) -> None:
    capture.offer(model, "1", TINY_CLASSES, "detect", data, result([0.3]), 0.2, 100)


def test_per_minute_cap_per_model(tmp_path: Path) -> None:
    metrics = Metrics()
    clock = [1000.0]
    settings = Settings(capture_dir=tmp_path, capture_max_per_minute=2, **EVERY)
    capture = Capture(settings, metrics, clock=lambda: clock[0])  # no writer: items stay queued
    for _ in range(3):
        offer(capture)
    offer(capture, model="other")
    assert capture.queue.qsize() == 3
    assert count(metrics, "dropped_rate_limit") == 1 and count(metrics, "dropped_rate_limit",
                                                                "other") == 0  # fmt: skip
    clock[0] += 59.0
    offer(capture)
    assert count(metrics, "dropped_rate_limit") == 2
    clock[0] += 1.0  # the first two are a minute old now
    offer(capture)
    offer(capture)
    offer(capture)
    assert capture.queue.qsize() == 5 and count(metrics, "dropped_rate_limit") == 3


def test_full_queue_drops_and_counts_without_touching_the_response(
    serve: Any, tmp_path: Path
) -> None:
    root = tmp_path / "c"
    with serve(capture_dir=root, capture_queue=1, score_threshold=0.0, **EVERY) as (app, c):
        capture = app.state.capture
        started, release = threading.Event(), threading.Event()
        write = capture.write

        def blocked(item: CaptureItem) -> None:
            started.set()
            assert release.wait(30)
            write(item)

        capture.write = blocked
        try:
            for i in range(4):
                r = c.post("/detect", content=jpeg(64 + i, 48))
                assert r.status_code == 200 and len(r.json()["detections"]) == 100
                if i == 0:
                    assert started.wait(10)  # the writer holds the first, the queue is free
            assert count(app, "dropped_queue_full") == 2  # one queued, two dropped
        finally:
            release.set()
        wait_until(lambda: count(app, "saved") == 2)
    assert len(captures(root)) == 2


def test_disk_error_is_counted_not_answered(serve: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with serve(capture_dir=blocker / "captures", score_threshold=0.0, **EVERY) as (app, c):
        for _ in range(2):
            r = c.post("/detect", content=jpeg(64, 48))
            assert r.status_code == 200 and r.json()["detections"]
        wait_until(lambda: count(app, "error") == 2)
        assert count(app, "saved") == 0


def item(data: bytes, when: datetime = WHEN, model: str = MODEL) -> CaptureItem:
    return CaptureItem(model, "1", TINY_CLASSES, "detect", when, "sample", data, 100, 50,
                       result([0.3]).detections, {"score_threshold": 0.2})  # fmt: skip


def test_disk_budget_evicts_the_oldest(tmp_path: Path) -> None:
    images = [b"\x89PNG\r\n\x1a\n" + bytes([i]) * 3000 for i in range(4)]
    one = capture_files(item(images[0])).size
    metrics = Metrics()
    capture = Capture(Settings(capture_dir=tmp_path, capture_max_bytes=2 * one + 100), metrics)
    assert capture.store is not None
    capture.store.scan()
    for i, data in enumerate(images[:3]):
        capture.write(item(data, WHEN.replace(day=1 + i), model=f"m{i % 2}"))
    assert count(metrics, "saved", "m0") == 2 and count(metrics, "saved", "m1") == 1
    assert count(metrics, "evicted", "m0") == 1  # the oldest: the first image, model m0
    left = {p.stem for p in tmp_path.glob("*/*/*")}
    assert left == {hashlib.sha256(d).hexdigest()[:16] for d in images[1:3]}
    assert not (tmp_path / "m0" / "2026-12-01").exists()  # its emptied day folder is gone
    assert capture.store.used_bytes == sum(p.stat().st_size for p in tmp_path.glob("*/*/*"))
    assert metrics.capture_disk_bytes._value.get() == capture.store.used_bytes

    # a new start reads the folder once: size and age order from the files
    for path in tmp_path.glob("m0/*/*"):  # the m0 capture is the oldest now
        os.utime(path, (1, 1))
    store = CaptureStore(tmp_path, 2 * one + 100)
    store.scan()
    assert store.used_bytes == capture.store.used_bytes and len(store) == 2
    assert store.write(capture_files(item(images[3])), MODEL) == ["m0"]
    assert not list(tmp_path.glob("m0/*/*"))


def test_one_capture_over_the_budget_is_an_error(tmp_path: Path) -> None:
    metrics = Metrics()
    capture = Capture(Settings(capture_dir=tmp_path, capture_max_bytes=1000), metrics)
    capture.write(item(b"\xff\xd8\xff" + b"x" * 2000))
    assert count(metrics, "error") == 1 and not list(tmp_path.rglob("*.*"))


def test_yolo_lines_are_normalised_and_clipped() -> None:
    dets = Detections(np.array([[-10, 10, 50, 40], [80, 0, 120, 60]], np.float32),
                      np.array([0.9, 0.5], np.float32), np.array([2, 0], np.int64))  # fmt: skip
    assert yolo_lines(dets, 100, 50).splitlines() == [
        "2 0.250000 0.500000 0.500000 0.600000",
        "0 0.900000 0.500000 0.200000 1.000000",
    ]
    assert yolo_lines(Detections.empty(), 100, 50) == ""


@pytest.mark.parametrize(
    ("data", "fmt"),
    [(jpeg(8, 8), ("jpeg", "jpg")), (png(8, 8), ("png", "png")),
     (b"RIFF\x00\x00\x00\x00WEBPVP8 ", ("webp", "webp")), (b"GIF89a", ("gif", "gif")),
     (b"BM\x00\x00", ("bmp", "bmp")), (b"II*\x00", ("tiff", "tif")),
     (b"junk", ("unknown", "bin"))],
)  # fmt: skip
def test_sniff_format(data: bytes, fmt: tuple[str, str]) -> None:
    assert sniff_format(data) == fmt


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="capture_unsure_low"):
        Settings(capture_unsure_low=0.6, capture_unsure_high=0.5)
    with pytest.raises(ValidationError, match="model names"):
        Settings(capture_models="ok,../bad")
    capture = Capture(Settings(capture_dir=tmp_path, capture_models="cars, birds"), Metrics())
    assert capture.captures("cars") and not capture.captures(MODEL)


def test_a_bug_in_offer_never_reaches_the_request(tmp_path: Path) -> None:
    metrics = Metrics()
    capture = Capture(Settings(capture_dir=tmp_path, **EVERY), metrics)

    def broken() -> datetime:
        raise RuntimeError("bug")

    capture.now = broken
    offer(capture)  # no exception
    assert count(metrics, "error") == 1
