"""The whole loop on CPU with small data: a real `python -m service` with capture on receives
images, `training.capture` makes them a dataset, a human corrects the labels (here: the known
boxes), `python -m training` fine-tunes a few steps from the served model's weights, `python -m
export` exports it, `training.promote` refuses it on the gate (a few steps are no measurable
gain), promotes it with --force and the admin route, the server answers with the new version,
`--rollback` and a SIGHUP bring the old one back."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from bench.attacks.server import Server, run_server
from model.checkpoint import save_weights_only
from tests import TINY_CLASSES, wait_until
from tests.training.promote_helpers import export_tiny, snapshot, tiny_model
from training.capture import main as capture_main
from training.model_history import read_log
from training.promote import main as promote_main

pytestmark = pytest.mark.slow
TOKEN = "loop-token"
SIZE = 128
COLOURS = ((230, 30, 30), (30, 200, 40), (40, 60, 230))  # class id -> colour


def scene(seed: int) -> tuple[bytes, list[str]]:
    """A PNG of noise with one or two coloured rectangles; its YOLO label lines."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(60, 140, (SIZE, SIZE, 3), dtype=np.uint8)
    lines = []
    for k in range(1 + seed % 2):
        cls = int(rng.integers(len(COLOURS)))
        w, h = (int(v) for v in rng.integers(24, 56, 2))
        x1, y1 = 64 * k + int(rng.integers(0, 64 - w // 2)) // 2, int(rng.integers(0, SIZE - h))
        pixels[y1 : y1 + h, x1 : x1 + w] = COLOURS[cls]
        lines.append(f"{cls} {(x1 + w / 2) / SIZE:.6f} {(y1 + h / 2) / SIZE:.6f} "
                     f"{w / SIZE:.6f} {h / SIZE:.6f}")  # fmt: skip
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue(), lines


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, Path, Path]]:
    """A server on models/default.onnx (version "1", the weights also as served.pt), capture
    on for every request, admin reload with a token; (server, model dir, capture dir)."""
    model = tiny_model()
    save_weights_only(model, tmp_path / "served.pt")
    models, captures = tmp_path / "models", tmp_path / "captures"
    export_tiny(model, models / "default.onnx", "1")
    with run_server(tmp_path, DETECTOR_MODEL_DIR=str(models), DETECTOR_THREADS="1",
                    DETECTOR_CAPTURE_DIR=str(captures), DETECTOR_CAPTURE_SAMPLE_RATE="1",
                    DETECTOR_ADMIN_RELOAD="true", DETECTOR_ADMIN_TOKEN=TOKEN) as srv:  # fmt: skip
        srv.wait_ready()
        yield srv, models, captures
        assert srv.terminate() == 0


def versions(server: Server) -> dict[str, str | None]:
    return {m["name"]: m["version"] for m in httpx.get(server.url + "/models").json()["models"]}


def detect_version(server: Server, image: bytes) -> str:
    r = httpx.post(server.url + "/detect", content=image, headers={"content-type": "image/png"},
                   timeout=30)  # fmt: skip
    assert r.status_code == 200, r.text
    return str(r.json()["model"]["version"])


def test_capture_dataset_finetune_promote_rollback(
    served: tuple[Server, Path, Path], tmp_path: Path
) -> None:
    from export.exporter.cli import main as export_main
    from training.cli import main as train_main

    server, models, captures = served
    scenes = [scene(i) for i in range(8)]
    for image, _ in scenes:
        assert detect_version(server, image) == "1"
    sidecars = lambda: list(captures.glob("default/*/*.json"))  # noqa: E731
    wait_until(lambda: len(sidecars()) == len(scenes), timeout_s=20,
               what=lambda: f"{len(sidecars())} captures")  # fmt: skip

    # capture -> dataset (all in train: 8 images split by hash could leave a split empty)
    data = tmp_path / "dataset"
    assert capture_main([str(captures), "--output", str(data), "--val", "0", "--test", "0"]) == 0
    labels = data / "labels" / "train"
    assert len(list(labels.glob("*.txt"))) == len(scenes)
    for image, lines in scenes:  # the human's corrections replace the model's guesses
        (labels / f"{hashlib.sha256(image).hexdigest()[:16]}.txt").write_text("\n".join(lines))
    assert "cat" in (data / "data.yaml").read_text()

    # fine-tune a few steps from the served weights, export as version "2"
    run = tmp_path / "run"
    assert train_main(["--data", str(data / "data.yaml"), "--init-weights",
                       str(tmp_path / "served.pt"), "--epochs", "1", "--batch-size", "4",
                       "--eval-interval", "0", "--workers", "0", "--device", "cpu",
                       "--no-progress", "--output-dir", str(run), "--mosaic-prob", "0",
                       "--init-classes", "name"]) == 0  # fmt: skip
    candidate = tmp_path / "candidate.onnx"
    assert export_main(["--checkpoint", str(run / "final.pt"), "--output", str(candidate),
                        "--version", "2", "--no-parity"]) == 0  # fmt: skip

    # the gate refuses it: nothing changes but the log
    before = snapshot(models)
    promote = ["--candidate", str(candidate), "--model", "default", "--model-dir", str(models),
               "--data", str(data / "data.yaml"), "--split", "train", "--bootstrap", "200",
               "--threads", "1", "--reload-url", server.url, "--admin-token", TOKEN]  # fmt: skip
    assert promote_main(promote) == 1
    assert snapshot(models, skip=["promotions.jsonl"]) == before
    assert versions(server) == {"default": "1"}

    # forced: swapped in, the service reloads on the admin route and answers as version "2"
    assert promote_main([*promote, "--force"]) == 0
    assert versions(server) == {"default": "2"}
    assert detect_version(server, scenes[0][0]) == "2"
    forced = read_log(models)[-1]
    assert forced["decision"] == "forced" and forced["reload"]["status"] == 200
    assert forced["reload"]["response"]["changes"][0]["version"] == "2"

    # rolled back, the service told by SIGHUP: version "1" again
    assert promote_main(["--rollback", "--model", "default", "--model-dir", str(models),
                         "--reload-pid", str(server.proc.pid)]) == 0  # fmt: skip
    wait_until(lambda: versions(server) == {"default": "1"}, timeout_s=30,
               what=lambda: versions(server))  # fmt: skip
    assert detect_version(server, scenes[0][0]) == "1"
    decisions = [e["decision"] for e in read_log(models)]
    assert decisions == ["refused", "forced", "rolled_back"]
    assert json.loads((data / "manifest.json").read_text())["names"] == list(TINY_CLASSES)
