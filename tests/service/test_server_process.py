"""`python -m service` as a real process: concurrency, memory, overload, limits over a real
socket, SIGTERM draining, startup without a model, and the model repository flags."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from bench.attacks.images import encode, jpeg
from bench.attacks.server import Server, ready_server, run_server
from bench.http_load import free_port
from tests import wait_until

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
MAX_UPLOAD = 2 * 1024 * 1024


def slow_png() -> bytes:
    """~4 MP PNG that compresses well but takes tens of ms to decode (PNG has no draft)."""
    ramp = np.linspace(0, 255, 2000, dtype=np.float32)
    arr = np.stack([np.add.outer(ramp, ramp) % 256] * 3, axis=-1).astype(np.uint8)
    return encode(Image.fromarray(arr), "PNG", compress_level=1)


@pytest.fixture(scope="module")
def server(tiny_onnx_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with ready_server(tmp_path_factory.mktemp("srv"), tiny_onnx_path, DETECTOR_MAX_QUEUE="4",
                      DETECTOR_MAX_UPLOAD_BYTES=str(MAX_UPLOAD)) as srv:
        yield srv


def test_concurrent_clients_and_stable_memory(server: Server) -> None:
    images = [jpeg(320, 240), jpeg(640, 480), encode(Image.new("RGB", (500, 300)), "PNG")]
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def client_loop(seed: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            i = seed
            while not stop.is_set():
                r = c.post("/detect", content=images[i % len(images)],
                           headers={"x-request-id": f"c{seed}-{i}"})  # fmt: skip
                assert r.headers["x-request-id"] == f"c{seed}-{i}"
                assert r.status_code == 200 or (
                    r.status_code == 503 and "retry-after" in r.headers
                ), r.text
                with lock:
                    statuses[r.status_code] += 1
                i += 1

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client_loop, k) for k in range(4)]
        time.sleep(1.5)  # warm-up: allocator and ORT arenas settle
        rss_warm = server.rss_bytes()
        time.sleep(3.0)
        stop.set()
        for f in futures:
            f.result()
    rss_end = server.rss_bytes()
    assert statuses[200] > 20 and set(statuses) <= {200, 503}, statuses
    assert rss_end <= rss_warm * 1.10, (rss_warm, rss_end)
    access = [r for r in server.log_records() if r.get("logger") == "service.access"]
    assert any(r["request_id"] == "c0-0" and r["status"] == 200 and r["path"] == "/detect"
               and r["request_bytes"] > 0 and r["image_width"] > 0 and "inference" in
               r["timings_ms"] for r in access)  # fmt: skip


def test_overload_flood_then_normal_service(server: Server) -> None:
    body = slow_png()
    barrier = threading.Barrier(24)

    def one() -> tuple[int, float, str | None]:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            barrier.wait()
            t0 = time.perf_counter()
            r = c.post("/detect", content=body, headers={"content-type": "image/png"})
            return r.status_code, time.perf_counter() - t0, r.headers.get("retry-after")

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(lambda _: one(), range(24)))
    codes = Counter(code for code, _, _ in results)
    assert set(codes) <= {200, 503} and codes[503] >= 5 and codes[200] >= 1, codes
    refused = [(t, retry) for code, t, retry in results if code == 503]
    assert all(retry == "1" for _, retry in refused)
    assert np.median([t for t, _ in refused]) < 1.0  # refused at once, not after waiting
    r = httpx.post(server.url + "/detect", content=jpeg(), timeout=30)
    assert r.status_code == 200
    assert httpx.get(server.url + "/health/ready").status_code == 200


def raw_exchange(server: Server, head: bytes, body: bytes) -> bytes:
    """Send `head` + `body` on a raw socket, never finish the body; return the response."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_limits_over_a_real_socket(server: Server) -> None:
    declared = raw_exchange(server, (b"POST /detect HTTP/1.1\r\nHost: x\r\n"
                                     b"Content-Type: image/jpeg\r\nContent-Length: 999999999\r\n"
                                     b"\r\n"), b"")  # fmt: skip
    assert declared.startswith(b"HTTP/1.1 413"), declared[:200]
    size = MAX_UPLOAD + 1
    chunked = raw_exchange(
        server,
        (
            b"POST /detect HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n"
            b"\r\n"
        ),
        f"{size:x}\r\n".encode() + b"\0" * size + b"\r\n",
    )
    assert chunked.startswith(b"HTTP/1.1 413"), chunked[:200]
    assert httpx.get(server.url + "/health/ready").status_code == 200


def test_sigterm_finishes_in_flight_requests(tiny_onnx_path: Path, tmp_path: Path) -> None:
    """Requests still uploading when SIGTERM arrives complete with 200; new connections are
    refused meanwhile; the process then exits 0."""
    image = jpeg(320, 240)
    release = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield image[:1000]
        assert release.wait(timeout=30)
        yield image[1000:]

    with run_server(tmp_path, DETECTOR_MODEL_PATH=str(tiny_onnx_path),
                    DETECTOR_THREADS="1") as srv:  # fmt: skip
        srv.wait_ready()

        def post() -> int:
            return httpx.post(srv.url + "/detect", content=slow_body(), timeout=60).status_code

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(post) for _ in range(4)]
            wait_until(lambda: srv.metric("detector_in_flight_requests") == 4, 30,
                       what="requests never got in flight")  # fmt: skip
            srv.proc.send_signal(signal.SIGTERM)

            def refusing() -> bool:  # the listening socket closes: no new connections
                try:
                    httpx.get(srv.url + "/health/live", timeout=1)
                except httpx.TransportError:
                    return True
                return False

            wait_until(refusing, 30, what="still accepting after SIGTERM")
            assert srv.proc.poll() is None  # still draining
            release.set()
            assert [f.result() for f in futures] == [200] * 4
        assert srv.proc.wait(timeout=30) == 0
        assert any(r["message"] == "shutdown complete" for r in srv.log_records())


def test_starts_without_a_model(tmp_path: Path) -> None:
    with run_server(tmp_path, DETECTOR_MODEL_PATH=str(tmp_path / "missing.onnx")) as srv:
        srv.wait_ready(path="/health/live")
        wait_until(lambda: any(r["level"] == "error" for r in srv.log_records()), 30, 0.02,
                   what="no error logged")  # fmt: skip
        ready = httpx.get(srv.url + "/health/ready")
        assert ready.status_code == 503 and "missing.onnx" in ready.json()["error"]["message"]
        assert httpx.post(srv.url + "/detect", content=jpeg()).status_code == 503
        assert srv.terminate() == 0
        errors = [r for r in srv.log_records() if r["level"] == "error"]
        assert len(errors) == 1 and "DETECTOR_MODEL_PATH" in errors[0]["message"]


def test_model_dir_and_default_model_flags(tiny_onnx_path: Path, tmp_path: Path) -> None:
    """`python -m service --model-dir DIR --default-model NAME` serves every model of DIR (the
    flags win over their DETECTOR_* variables)."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("boats", "cars"):
        shutil.copy(tiny_onnx_path, models / f"{name}.onnx")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
    env.update(DETECTOR_HOST="127.0.0.1", DETECTOR_THREADS="1", DETECTOR_DEFAULT_MODEL="ghost",
               DETECTOR_MODEL_DIR=str(tmp_path / "elsewhere"))  # fmt: skip
    argv = ["--port", str(port), "--model-dir", str(models), "--default-model", "cars"]
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "service", *argv], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    srv = Server(proc, f"http://127.0.0.1:{port}", port, log)
    try:
        srv.wait_ready()

        def loaded() -> dict[str, Any] | None:  # ready follows the default model alone
            found: dict[str, Any] = httpx.get(srv.url + "/models").json()
            return None if any(m["state"] == "loading" for m in found["models"]) else found

        listing = wait_until(loaded, 30, 0.1, what="models still loading")
        assert listing["default"] == "cars"
        assert [m["name"] for m in listing["models"]] == ["boats", "cars"]
        assert httpx.post(srv.url + "/detect", content=jpeg()).json()["model"]["name"] == "cars"
        r = httpx.post(srv.url + "/detect?model=boats", content=jpeg())
        assert r.json()["model"]["name"] == "boats"
        assert srv.terminate() == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
