"""Try a model file in a throwaway child process before the service loads it itself.

An ONNX file can be hostile in ways no parser sees: a 1 KB `Loop` of 1e15 steps hangs the
warm-up forever, a 948-byte `ConstantOfShape([16384, 16384])` makes ONNX Runtime's constant
folding allocate gigabytes while the session is created. Neither can be stopped from inside the
process (session creation has no cancel; an arena cap does not cover constant folding:
measured 2.1 GB with a 256 MiB arena), so the file is first loaded and warmed up here, in a
child (`python -m export.model_check PATH ...`) that the parent kills when it takes longer than
the time budget or holds more resident memory than the memory budget. The child also has
oom_score_adj 1000 (the kernel's OOM killer takes it first, never the serving process) and dies
with the thread that started it (PR_SET_PDEATHSIG). Only when the child succeeds does the
parent load the file itself. NumPy + onnxruntime (via export.backends), no torch.

Clients get our own words for the kind of failure (`ModelRefusedError.public`); the library's
message goes to the log (`detail`).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from export.errors import ModelMetadataError
from export.postprocess import PostprocessConfig

MiB = 1024 * 1024
POLL_S = 0.01  # RSS watch period: at ~5 GB/s of page faults, ~50 MB past the budget at most
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
NOT_LOADABLE = "not a loadable ONNX model"


class ModelRefusedError(Exception):
    """A model file the service will not serve: `public` for clients, `detail` for the log."""

    def __init__(self, public: str, detail: str | None = None) -> None:
        super().__init__(detail or public)
        self.public = public
        self.detail = detail or public


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(our words for clients, the full message for the log) of a failed load."""
    if isinstance(exc, ModelRefusedError):
        return exc.public, exc.detail
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, FileNotFoundError):
        return "not found", detail
    if isinstance(exc, OSError):  # a symlink loop, no permission, a directory
        return "not a readable file", detail
    if isinstance(exc, ModelMetadataError):
        return f"metadata invalid: {exc}", detail
    return NOT_LOADABLE, detail


def warmup_sizes(size: int) -> tuple[tuple[int, int], ...]:
    """Square, 4:3 and 3:4 photos: the common letterbox shapes (width, height)."""
    return (size, size), (size, size * 3 // 4), (size * 3 // 4, size)


def check_outputs(detector: object) -> None:
    """The network scores as many classes as the metadata names (a mismatch would label
    detections with the wrong names, or none at all), with box and centre-ness per location."""
    from export.runtime import ImageDetector

    if not isinstance(detector, ImageDetector):
        return
    size = detector.metadata.input_size
    cls, box, ctr = detector.infer(np.zeros((1, 3, size, size), np.float32))
    names = len(detector.metadata.class_names)
    if cls.ndim != 3 or cls.shape[-1] != names:
        raise ModelRefusedError(
            f"metadata invalid: the network scores {cls.shape[-1] if cls.ndim else 0} classes, "
            f"class_names has {names}"
        )
    if box.shape != (*cls.shape[:2], 4) or ctr.shape != (*cls.shape[:2], 1):
        shapes = f"{cls.shape}, {box.shape}, {ctr.shape}"
        raise ModelRefusedError(f"{NOT_LOADABLE}: outputs are not (N, P, C), (N, P, 4), "
                                f"(N, P, 1)", f"output shapes {shapes}")  # fmt: skip


class ModelCheck:
    """Runs the child check under the budgets; `cancel` kills running children (shutdown)."""

    def __init__(self, timeout_s: float, memory_bytes: int) -> None:
        self.timeout_s = timeout_s
        self.memory_bytes = memory_bytes
        self._lock = threading.Lock()
        self._children: set[subprocess.Popen[bytes]] = set()
        self._cancelled = False

    def run(self, path: Path, backend: str, threads: int) -> int:
        """Load and warm up `path` in a child; its peak RSS in bytes, or ModelRefusedError."""
        args = [sys.executable, "-m", "export.model_check", str(path), "--backend", backend,
                "--threads", str(threads), "--timeout-s", str(self.timeout_s)]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH"))
            if p)}  # fmt: skip
        with self._lock:
            if self._cancelled:
                raise ModelRefusedError("the service is shutting down")
            # stdout: one short JSON line at the end (well within a pipe's buffer)
            child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env)  # fmt: skip
            self._children.add(child)
        try:
            peak = self._watch(child)
            report = child.stdout.read(64 * 1024).decode("utf-8", "replace") if child.stdout else ""
        finally:
            with self._lock:
                self._children.discard(child)
            if child.stdout:
                child.stdout.close()
        if self._cancelled:  # killed by `cancel` just before it would have been seen
            raise ModelRefusedError("the service is shutting down")
        if child.returncode != 0:
            self._refuse(child.returncode, report)
        return peak

    def _watch(self, child: subprocess.Popen[bytes]) -> int:
        deadline = time.monotonic() + self.timeout_s
        peak = 0
        while True:
            try:
                child.wait(timeout=POLL_S)
                return peak
            except subprocess.TimeoutExpired:
                pass
            peak = max(peak, rss_bytes(child.pid))
            if self._cancelled:
                reason = "the service is shutting down"
            elif time.monotonic() > deadline:
                reason = f"load took longer than {self.timeout_s:g} s"
            elif peak > self.memory_bytes:
                reason = f"load needed more than {self.memory_bytes // MiB} MiB"
            else:
                continue
            child.kill()
            child.wait()
            raise ModelRefusedError(reason, f"{reason} (model check child killed)")

    @staticmethod
    def _refuse(code: int, report: str) -> None:
        try:
            failure = json.loads(report.strip().splitlines()[-1])
            public, detail = str(failure["public"]), str(failure["detail"])
        except (ValueError, KeyError, IndexError, TypeError):  # no report: it died
            if code < 0:  # e.g. the OOM killer (SIGKILL) or the CPU-time limit (SIGXCPU)
                public = f"the load was killed by signal {-code} (out of memory or CPU time?)"
            else:
                public = f"{NOT_LOADABLE} (the check exited with status {code})"
            detail = f"model check child died: {public}"
        raise ModelRefusedError(public, detail)

    def cancel(self) -> None:
        """Kill the running checks (they fail at once) and refuse later ones."""
        with self._lock:
            self._cancelled = True
            for child in self._children:
                child.kill()


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid` (Linux /proc; 0 when gone or without /proc)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # gone already, or no /proc (the timeout holds)
        return 0


def _sacrifice_self(timeout_s: float, threads: int) -> None:
    """In the child: the OOM killer's first choice, dead when the parent's thread dies, and a
    CPU-time limit as the last resort if nobody is left to kill it."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    cpu_s = math.ceil(timeout_s * max(1, threads)) + 10
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))


def check_in_this_process(path: Path, backend: str, threads: int) -> None:
    """What the child does: load on the serving backend, warm up, compare the outputs. With
    `auto`: ONNX Runtime, then OpenVINO too when the file's record makes it a candidate (the
    parent may time and serve it, and it reads the file its own way)."""
    from export.backends import load_detector

    detector = load_detector(path, "onnxruntime" if backend == "auto" else backend, threads,
                             spinning=False)  # fmt: skip
    _check_and_warm_up(detector)
    if backend == "auto":
        from export.runtime_choice import file_strings, openvino_candidate

        precision = openvino_candidate(file_strings(detector))
        if precision is not None:  # its reading and one compile (~1 s a shape) is the risk
            del detector  # one runtime in memory at a time
            check_outputs(load_detector(path, "openvino", threads, precision=precision))


def _check_and_warm_up(detector: Any) -> None:
    check_outputs(detector)  # first: its message is clearer than the warm-up's
    for w, h in warmup_sizes(detector.metadata.input_size):
        detector.detect_image(Image.new("RGB", (w, h)), PostprocessConfig())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.model_check", description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timeout-s", type=float, default=60.0)
    a = parser.parse_args(argv)
    _sacrifice_self(a.timeout_s, a.threads)
    try:
        import onnxruntime as ort

        ort.set_default_logger_severity(4)  # the failure is reported below, once
        check_in_this_process(a.path, a.backend, a.threads)
    except Exception as exc:
        public, detail = describe_failure(exc)
        print(json.dumps({"public": public, "detail": detail[:2000]}), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
