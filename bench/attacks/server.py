"""Run `python -m service` as a real subprocess on a free localhost port."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.http_load import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    port: int
    log_path: Path

    def rss_bytes(self, field: str = "VmRSS") -> int:
        """Resident memory now; `field="VmHWM"`: its peak since the process started."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field}")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def quiet_cpu_seconds(self, quiet_s: float = 0.3, idle_cpu_s: float = 0.02,
                          timeout_s: float = 30.0) -> float:  # fmt: skip
        """Wait until the server used under `idle_cpu_s` of CPU in `quiet_s`; its CPU seconds
        then. TimeoutError (with the CPU seconds so far) when it never goes quiet."""
        deadline = time.monotonic() + timeout_s
        last = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(quiet_s)
            now = self.cpu_seconds()
            if now - last < idle_cpu_s:
                return now
            last = now
        raise TimeoutError(f"the server never went quiet ({last:.2f} s of CPU)")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def socket_fds(self) -> int:
        """Open sockets now. The server may close an fd between the listing and its readlink:
        that one is not counted."""
        count = 0
        for fd in Path(f"/proc/{self.proc.pid}/fd").iterdir():
            try:
                count += os.readlink(fd).startswith("socket:")
            except FileNotFoundError:
                continue  # closed since the listing
        return count

    def child_pids(self) -> list[int]:
        """The server's child processes now (e.g. a model file's check)."""
        pids: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                pids += [int(pid) for pid in (task / "children").read_text().split()]
            except FileNotFoundError:
                continue  # the thread ended since the listing
        return pids

    def metric(self, name: str) -> float:
        """The value of the unlabelled Prometheus sample `name` on GET /metrics now."""
        for line in httpx.get(self.url + "/metrics", timeout=5).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (not a last one still being written)."""
        lines = self.log_path.read_text().split("\n")[:-1]
        return [json.loads(line) for line in lines if line.strip()]

    def wait_ready(self, timeout_s: float = 60.0, path: str = "/health/ready") -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log_path.read_text()}")
            try:
                if httpx.get(self.url + path, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready: {self.log_path.read_text()}")

    def terminate(self, timeout_s: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)


def _limit_files(n: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return apply


@contextmanager
def run_server(
    tmp_path: Path, nofile: int | None = None, tree: Path = REPO, port: int | None = None,
    **env: str,
) -> Iterator[Server]:
    """`python -m service` of checkout `tree` on `port` (default: a free one) with `env`
    (DETECTOR_*); `nofile`: its open-file limit (as `ulimit -n`). Killed if still running."""
    port = port or free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
    full_env.update(DETECTOR_HOST="127.0.0.1", DETECTOR_PORT=str(port), PYTHONUNBUFFERED="1",
                    PYTHONPATH=str(tree))  # fmt: skip
    full_env.update(env)
    log_path = tmp_path / f"server-{port}.log"
    with log_path.open("wb") as log:
        limit = None if nofile is None else _limit_files(nofile)
        proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=tree, env=full_env,
                                stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit)  # fmt: skip
    server = Server(proc, f"http://127.0.0.1:{port}", port, log_path)
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def ready_server(
    logs: Path, model: Path, clean_exit: bool = True, **env: str
) -> Iterator[Server]:
    """A ready `python -m service` on `model` with one ORT thread and `env` (DETECTOR_*), for a
    module-scoped fixture; stopped with SIGTERM afterwards (exit code 0 when `clean_exit`)."""
    with run_server(logs, DETECTOR_MODEL_PATH=str(model), DETECTOR_THREADS="1", **env) as srv:
        srv.wait_ready()
        yield srv
        code = srv.terminate()
        assert code == 0 or not clean_exit, code
