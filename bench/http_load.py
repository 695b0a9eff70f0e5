"""A real `python -m service` process on a free localhost port, and HTTP clients for it.

Clients use http.client with one keep-alive connection each and send the JPEG bytes as the
raw body (`Content-Type: image/jpeg`), the lightest request form the API accepts. Traffic
goes to 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout_s: float) -> float:
        """Seconds until GET /health/ready answers 200 (RuntimeError on exit or timeout)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2.0)
                conn.request("GET", "/health/ready")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout_s:.0f} s:\n{self.log_tail()}")


@contextmanager
def run_server(model_path: Path, log_path: Path, env: dict[str, str]) -> Iterator[Server]:
    """Start the service on `model_path`; always stopped (SIGTERM, then kill) on exit."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
    full_env.update(DETECTOR_MODEL_PATH=str(model_path), DETECTOR_HOST=HOST,
                    DETECTOR_PORT=str(port), PYTHONUNBUFFERED="1")  # fmt: skip
    full_env.update(env)
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=full_env,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    server = Server(proc, port, log_path)
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


class Client:
    """One keep-alive connection; `detect` returns (seconds, status, parsed body or None)."""

    def __init__(self, port: int, timeout_s: float = 60.0) -> None:
        self.port, self.timeout_s = port, timeout_s
        self.conn: http.client.HTTPConnection | None = None

    def detect(self, body: bytes, parse: bool = False) -> tuple[float, int, dict[str, Any] | None]:
        """POST the JPEG. A kept-alive connection the server has meanwhile closed (uvicorn
        drops idle ones after 5 s) is retried once on a new connection, as browsers do."""
        headers = {"Content-Type": "image/jpeg", "Content-Length": str(len(body))}
        for attempt in (0, 1):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout_s)
            t0 = time.perf_counter()
            try:
                self.conn.request("POST", "/detect", body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (OSError, http.client.HTTPException):
                self.close()
                if not reused or attempt == 1:
                    return time.perf_counter() - t0, 0, None
        elapsed = time.perf_counter() - t0
        if response.getheader("connection", "").lower() == "close":
            self.close()
        parsed = json.loads(data) if parse and response.status == 200 else None
        return elapsed, response.status, parsed

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class LoadResult:
    clients: int
    seconds: float
    latencies_s: list[float] = field(default_factory=list)  # successful requests only
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.seconds if self.seconds > 0 else 0.0


def merge_results(parts: list[LoadResult]) -> dict[str, Any]:
    """Several closed-loop runs of one configuration as one: req/s over their total time,
    errors, statuses and the latency summary of every successful request."""
    from bench.report import summary

    seconds = sum(p.seconds for p in parts)
    latencies = [x for p in parts for x in p.latencies_s]
    statuses: dict[str, int] = {}
    for p in parts:
        for k, v in p.statuses.items():
            statuses[str(k)] = statuses.get(str(k), 0) + v
    return {"seconds": round(seconds, 2),
            "throughput_rps": round(len(latencies) / seconds, 3) if seconds else 0.0,
            "errors": sum(p.errors for p in parts), "statuses": statuses,
            "latency": summary(latencies)}  # fmt: skip


def closed_loop(port: int, body: bytes, clients: int, duration_s: float,
                max_requests: int) -> LoadResult:  # fmt: skip
    """`clients` threads, each sending its next request as soon as the previous one is
    answered, until `duration_s` has passed or `max_requests` were started in all."""
    lock = threading.Lock()
    result = LoadResult(clients, 0.0)
    started = 0
    stop_at = time.perf_counter() + duration_s

    def worker() -> None:
        nonlocal started
        client = Client(port)
        try:
            while time.perf_counter() < stop_at:
                with lock:
                    if started >= max_requests:
                        return
                    started += 1
                elapsed, status, _ = client.detect(body)
                with lock:
                    result.statuses[status] = result.statuses.get(status, 0) + 1
                    if status == 200:
                        result.latencies_s.append(elapsed)
                    else:
                        result.errors += 1
        finally:
            client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration_s + 120)
    result.seconds = time.perf_counter() - t0
    return result
