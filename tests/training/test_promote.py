"""`python -m training.promote`: the gate (a paired bootstrap of the candidate and the served
model), the atomic swap with its history, the log, the rollback and the reload request."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from export.repository import scan_folder
from tests.training.promote_helpers import (
    export_tiny,
    label_with,
    noise_png,
    snapshot,
    tiny_model,
    write_yolo,
)
from training.model_history import locked, read_log
from training.promote import main

pytestmark = pytest.mark.slow  # tiny models exported with torch (a few seconds)


@dataclass(frozen=True)
class Models:
    served: Path  # version "1", default init: no detections
    same: Path  # the same weights as version "1b": exactly the served model's figures
    better: Path  # version "2": confident on class 0, the dataset's labels are its detections
    other_classes: Path  # classes a, b, c
    data: Path  # data.yaml, split test


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("promote")
    served = export_tiny(tiny_model(), root / "served.onnx", "1")
    same = export_tiny(tiny_model(), root / "same.onnx", "1b")
    better = export_tiny(tiny_model(confident_class=0), root / "better.onnx", "2")
    other = export_tiny(tiny_model(classes=("a", "b", "c")), root / "other.onnx", "3")
    data = write_yolo(root / "data", [noise_png(i) for i in range(6)])
    assert label_with(better, data) > 6
    return Models(served, same, better, other, data)


@pytest.fixture
def model_dir(models: Models, tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "default.onnx").write_bytes(models.served.read_bytes())
    return folder


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def promote(model_dir: Path, candidate: Path, data: Path | None, *extra: str) -> int:
    gate = ["--data", str(data), "--bootstrap", "200"] if data else []
    return main(["--candidate", str(candidate), "--model", "default", "--model-dir",
                 str(model_dir), *gate, "--threads", "1", *extra])  # fmt: skip


def test_a_better_candidate_is_promoted_and_rolled_back(
    models: Models, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert promote(model_dir, models.better, models.data) == 0
    assert "difference +1.0000" in capsys.readouterr().out
    served = model_dir / "default.onnx"
    assert sha(served) == sha(models.better)
    (kept,) = (model_dir / ".history" / "default").glob("*.onnx")
    assert kept.name.endswith("-1.onnx") and sha(kept) == sha(models.served)
    # the service's scan sees one model: the history and the log are not served
    assert list(scan_folder(model_dir)) == ["default"]
    (entry,) = read_log(model_dir)
    assert entry["decision"] == "promoted" and entry["user"] and entry["model"] == "default"
    assert entry["candidate"]["sha256"] == sha(models.better)
    assert entry["candidate"]["version"] == "2" and entry["current"]["version"] == "1"
    gate = entry["gate"]
    assert gate["passed"] and gate["images"] == 6 and gate["split"] == "test"
    assert gate["candidate"]["value"] == 1.0 and gate["current"]["value"] == 0.0
    assert gate["delta"]["low"] > 0 and gate["confidence"] == 0.95

    assert main(["--rollback", "--model", "default", "--model-dir", str(model_dir)]) == 0
    assert sha(served) == sha(models.served)
    assert not list((model_dir / ".history" / "default").glob("*.onnx"))
    (replaced,) = (model_dir / ".history" / "default" / "rolled-back").glob("*.onnx")
    assert replaced.name.endswith("-2.onnx") and sha(replaced) == sha(models.better)
    last = read_log(model_dir)[-1]
    assert last["decision"] == "rolled_back" and last["restored"]["version"] == "1"
    # nothing left to roll back to: an error, nothing changed, nothing logged
    assert main(["--rollback", "--model", "default", "--model-dir", str(model_dir)]) == 2
    assert "no previous version" in capsys.readouterr().err and len(read_log(model_dir)) == 2


@pytest.mark.parametrize("which", ["same", "other_classes", "served"])
def test_a_refusal_changes_nothing_but_the_log(
    models: Models, model_dir: Path, which: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(model_dir)
    assert promote(model_dir, getattr(models, which), models.data) == 1
    out = capsys.readouterr().out
    assert snapshot(model_dir, skip=["promotions.jsonl"]) == before
    assert sorted(os.listdir(model_dir)) == ["default.onnx", "promotions.jsonl"]  # no .history
    (entry,) = read_log(model_dir)
    assert entry["decision"] == "refused" and "refused" in out
    if which == "same":  # identical figures: the interval of the difference is [0, 0]
        assert entry["gate"]["delta"]["value"] == 0 and not entry["gate"]["passed"]
        assert "does not lie above 0" in entry["reason"]
    elif which == "other_classes":
        assert "classes" in entry["reason"] and "gate" not in entry
    else:
        assert "same sha256" in entry["reason"]


def test_force_promotes_what_the_gate_refuses(models: Models, model_dir: Path) -> None:
    assert promote(model_dir, models.same, models.data, "--force") == 0
    entry = read_log(model_dir)[-1]
    assert entry["decision"] == "forced" and entry["gate"]["passed"] is False
    assert sha(model_dir / "default.onnx") == sha(models.same)
    assert promote(model_dir, models.served, None, "--force") == 0  # no data: no gate at all
    assert read_log(model_dir)[-1]["decision"] == "forced" and "gate" not in read_log(model_dir)[-1]
    assert len(list((model_dir / ".history" / "default").glob("*.onnx"))) == 2
    # the other class list is refused even with --force
    assert promote(model_dir, models.other_classes, None, "--force") == 1


def test_triton_layout_gains_a_version_folder_and_rolls_it_back(
    models: Models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "models"
    (repo / "cars" / "1").mkdir(parents=True)
    (repo / "cars" / "1" / "model.onnx").write_bytes(models.served.read_bytes())
    args = ["--candidate", str(models.better), "--model-dir", str(repo), "--model", "cars"]
    assert main([*args, "--data", str(models.data), "--bootstrap", "200"]) == 0
    source = scan_folder(repo)["cars"]
    assert source.version == "2" and sha(source.path) == sha(models.better)
    assert sha(repo / "cars" / "1" / "model.onnx") == sha(models.served)  # kept in place
    assert read_log(repo)[-1]["decision"] == "promoted"
    rollback = ["--rollback", "--model", "cars", "--model-dir", str(repo)]
    assert main(rollback) == 0
    assert scan_folder(repo)["cars"].version == "1" and not (repo / "cars" / "2").exists()
    (removed,) = (repo / ".history" / "cars" / "rolled-back").iterdir()
    assert removed.name.endswith("-v2") and sha(removed / "model.onnx") == sha(models.better)
    assert read_log(repo)[-1]["restored"]["version"] == "1"
    assert main(rollback) == 2  # one version left: nothing to roll back to
    assert "no previous version" in capsys.readouterr().err
    assert list(scan_folder(repo)) == ["cars"]


def test_missing_models_and_missing_data_are_errors(
    models: Models, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--candidate", str(models.better), "--model-dir", str(model_dir), "--force"]
    assert main([*args, "--model", "birds"]) == 2
    assert "no model 'birds'" in capsys.readouterr().err
    assert main([*args, "--model", "default", "--candidate", str(model_dir / "nope.onnx")]) == 2
    with locked(model_dir):  # another promotion is running
        assert main([*args, "--model", "default"]) == 2
    assert "another promotion" in capsys.readouterr().err
    assert not (model_dir / "promotions.jsonl").exists()
    assert sha(model_dir / "default.onnx") == sha(models.served)
    with pytest.raises(SystemExit):  # the gate needs data unless --force
        main(["--candidate", str(models.better), "--model", "default", "--model-dir",
              str(model_dir)])  # fmt: skip


class _Admin(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_POST(self) -> None:
        _Admin.seen.append((self.path, self.headers.get("authorization")))
        body = json.dumps({"status": "reloaded", "changes": [], "models": ["default"]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def admin_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Admin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Admin.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_service_is_asked_to_reload(models: Models, model_dir: Path, admin_url: str) -> None:
    assert promote(model_dir, models.better, None, "--force", "--reload-url", admin_url,
                   "--admin-token", "s3cret") == 0  # fmt: skip
    assert _Admin.seen == [("/admin/reload", "Bearer s3cret")]
    assert read_log(model_dir)[-1]["reload"]["response"]["status"] == "reloaded"
    hups: list[int] = []
    previous = signal.signal(signal.SIGHUP, lambda *_: hups.append(1))
    try:
        assert main(["--rollback", "--model", "default", "--model-dir", str(model_dir),
                     "--reload-pid", str(os.getpid())]) == 0  # fmt: skip
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert hups == [1] and read_log(model_dir)[-1]["reload"] == {"via": "SIGHUP",
                                                                 "pid": os.getpid()}
    # an unreachable service: the promotion stands, the failure is logged, exit status 3
    assert promote(model_dir, models.better, None, "--force", "--reload-url",
                   "http://127.0.0.1:9") == 3  # fmt: skip
    assert "error" in read_log(model_dir)[-1]["reload"]
    assert sha(model_dir / "default.onnx") == sha(models.better)
