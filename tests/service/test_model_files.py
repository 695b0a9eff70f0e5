"""Model files validated before they serve: a real `python -m service` reloads
hostile or malformed files (generated here with onnx.helper, carrying the tiny model's
metadata), refuses each with 409 in our own words, keeps serving the old model, and still
exits 0 on SIGTERM within the graceful timeout."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.attacks.hostile_models import constant_of_shape, endless_loop, with_metadata
from bench.attacks.images import jpeg
from bench.attacks.server import Server, ready_server, run_server
from tests import wait_until

pytest.importorskip("onnx", reason="building hostile ONNX files needs the onnx package")

LOAD_TIMEOUT_S = 3
MEMORY_MIB = 512
BUDGETS = {"DETECTOR_ADMIN_RELOAD": "true", "DETECTOR_MODEL_LOAD_TIMEOUT_S": str(LOAD_TIMEOUT_S),
           "DETECTOR_MODEL_LOAD_MEMORY_BYTES": str(MEMORY_MIB * 2**20)}  # fmt: skip
KEPT = "still serving model 0.1.0"  # the repository name: the file stem


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model") / "model.onnx"


@pytest.fixture(scope="module")
def server(
    tiny_onnx_path: Path, model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    shutil.copy(tiny_onnx_path, model_path)
    with ready_server(tmp_path_factory.mktemp("srv"), model_path, **BUDGETS) as srv:
        yield srv


@pytest.fixture
def restore(server: Server, tiny_onnx_path: Path, model_path: Path) -> Iterator[None]:
    """Put the good model back (and reload it) after the test."""
    yield
    model_path.unlink(missing_ok=True)
    shutil.copy(tiny_onnx_path, model_path)
    assert reload(server).status_code == 200


def reload(server: Server) -> httpx.Response:
    return httpx.post(server.url + "/admin/reload", timeout=60)


def refused(server: Server, says: str) -> str:
    """Reload, expect 409 saying `says`, and check the old model still serves."""
    r = reload(server)
    message: str = r.json()["error"]["message"]
    assert r.status_code == 409 and says in message and KEPT in message, r.text
    assert "Error" not in message and "Invalid" not in message  # no exception class names
    serves(server)
    return message


def serves(server: Server) -> None:
    assert httpx.get(server.url + "/model").status_code == 200
    r = httpx.post(server.url + "/detect?classes=cat,person", content=jpeg(), timeout=30)
    assert r.status_code == 200 and r.json()["model"]["version"] == "0.1.0", r.text


@pytest.mark.slow
@pytest.mark.usefixtures("restore")
def test_endless_loop_is_refused_at_the_time_budget(server: Server, model_path: Path) -> None:
    endless_loop(model_path, model_path)
    pending: list[str] = []
    worker = threading.Thread(target=lambda: pending.append(refused(server, "took longer")))
    t0 = time.monotonic()
    worker.start()
    wait_until(server.child_pids, 10, what="the hostile file's check never started")
    serves(server)  # while the hostile file loads
    worker.join(timeout=30)
    assert pending and f"load took longer than {LOAD_TIMEOUT_S} s" in pending[0]
    assert time.monotonic() - t0 < LOAD_TIMEOUT_S + 10
    refused(server, "took longer")  # the reload lock was released


@pytest.mark.usefixtures("restore")
def test_constant_of_shape_is_refused_at_the_memory_budget(
    server: Server, model_path: Path
) -> None:
    constant_of_shape(model_path, model_path)  # 1 GiB of constant folding
    refused(server, f"load needed more than {MEMORY_MIB} MiB")
    assert server.rss_bytes("VmHWM") < 400 * 2**20  # the child held it, not the server


@pytest.mark.usefixtures("restore")
@pytest.mark.parametrize(
    ("props", "says"),
    [
        ({"class_names": "[1, 2, 3]"}, "metadata invalid: class_names[0] must be a string"),
        ({"std": "[0, 0, 0]"}, "metadata invalid: std must be 3 numbers > 0"),
        ({"name": "n" * 1_000_000}, "metadata invalid: name must be a string of 1 to 128"),
        ({"class_names": '["cat", "dog", "person", "bird"]'},
         "metadata invalid: the network scores 3 classes, class_names has 4"),
    ],
)  # fmt: skip
def test_off_schema_metadata_is_refused(
    server: Server, tiny_onnx_path: Path, model_path: Path, props: dict[str, str], says: str
) -> None:
    with_metadata(tiny_onnx_path, model_path, **props)
    message = refused(server, says)
    assert len(message) < 300


@pytest.mark.usefixtures("restore")
def test_unloadable_files_get_our_words(server: Server, model_path: Path) -> None:
    model_path.write_bytes(b"not an onnx file")
    refused(server, "cannot load model.onnx: not a loadable ONNX model")
    records = server.log_records()
    assert any("INVALID_PROTOBUF" in str(r.get("message")) for r in records)  # the log has it
    model_path.unlink()
    model_path.symlink_to(model_path.name)  # a symlink loop
    refused(server, "cannot load model.onnx: not a readable file")
    model_path.unlink()
    refused(server, "cannot load model.onnx: not found")


@pytest.mark.slow
def test_sighups_coalesce(server: Server) -> None:
    def rescans() -> int:
        return sum(r.get("message") == "model repository rescanned" and r.get("trigger") ==
                   "SIGHUP" for r in server.log_records())  # fmt: skip

    before = rescans()
    for _ in range(25):
        server.proc.send_signal(signal.SIGHUP)
        time.sleep(0.01)
    # Each rescan that finished while the signals were sent lets one more be queued (a SIGHUP
    # after the queued rescan started may follow a newer file); a busy machine stretches the
    # 25 sends over more than one rescan.
    finished_during = rescans() - before
    last, since = rescans(), time.monotonic()
    while time.monotonic() - since < 3:  # until no rescan has finished for 3 s
        time.sleep(0.2)
        if (now := rescans()) != last:
            last, since = now, time.monotonic()
    assert 1 <= last - before <= 2 + finished_during, (last - before, finished_during)
    serves(server)


@pytest.mark.slow
def test_startup_refuses_a_hostile_file_and_sigterm_exits(
    tiny_onnx_path: Path, tmp_path: Path
) -> None:
    path = endless_loop(tiny_onnx_path, tmp_path / "loop.onnx")
    env = {**BUDGETS, "DETECTOR_MODEL_PATH": str(path), "DETECTOR_THREADS": "1"}
    with run_server(tmp_path, **env) as srv:
        srv.wait_ready(path="/health/live")

        def settled() -> httpx.Response | None:  # served, or refused at the time budget
            r = httpx.get(srv.url + "/health/ready")
            return r if r.status_code == 200 or "took longer" in r.text else None

        r = wait_until(settled, LOAD_TIMEOUT_S + 20, 0.2, what="the load never ended")
        body = json.dumps(r.json())
        assert r.status_code == 503, r.text
        assert f"cannot load loop.onnx: load took longer than {LOAD_TIMEOUT_S} s" in body
        assert srv.terminate(timeout_s=15) == 0


@pytest.mark.slow
def test_sigterm_during_a_hostile_load_exits_within_the_graceful_timeout(
    tiny_onnx_path: Path, tmp_path: Path
) -> None:
    model = Path(shutil.copy(tiny_onnx_path, tmp_path / "model.onnx"))
    graceful = 2
    env = {**BUDGETS, "DETECTOR_MODEL_LOAD_TIMEOUT_S": "600",
           "DETECTOR_GRACEFUL_TIMEOUT_S": str(graceful)}  # fmt: skip
    with ready_server(tmp_path, model, **env) as srv:
        endless_loop(tiny_onnx_path, model)
        srv.proc.send_signal(signal.SIGHUP)  # a reload no request waits for
        answers: list[object] = []

        def admin_reload() -> None:  # and one that a request waits for
            try:
                answers.append(reload(srv).status_code)
            except httpx.HTTPError as exc:
                answers.append(exc)

        threading.Thread(target=admin_reload, daemon=True).start()
        wait_until(srv.child_pids, 10, what="the hostile file's check never started")
        serves(srv)
        t0 = time.monotonic()
        assert srv.terminate(timeout_s=graceful + 15) == 0
        assert time.monotonic() - t0 < graceful + 8
