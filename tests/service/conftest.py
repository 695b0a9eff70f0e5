"""Fixtures for service tests: apps built with `create_app` on the real tiny ONNX model
(`tiny_onnx_path`, a session fixture of tests/conftest.py)."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from PIL import Image

from export.postprocess import PostprocessConfig
from export.runtime import DetectionResult, OnnxDetector
from service.app import create_app
from service.engine import Detector, Loader
from service.settings import Settings
from tests import wait_until

with warnings.catch_warnings():  # starlette's "use httpx2" notice, emitted on import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

AppFactory = Callable[..., Any]


def wait_ready(client: TestClient, timeout_s: float = 20.0) -> None:
    wait_until(lambda: client.get("/health/ready").status_code == 200, timeout_s,
               what=lambda: f"not ready: {client.get('/health/ready').json()}")  # fmt: skip


class GatedDetector:
    """Wraps a real detector; `detect_bytes` waits for `gate` (set by default) and counts calls,
    so tests can hold the inference worker busy for exactly as long as they need."""

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.metadata = inner.metadata
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Semaphore(0)
        self.calls = 0

    def detect_image(self, image: Image.Image, cfg: PostprocessConfig) -> DetectionResult:
        return self.inner.detect_image(image, cfg)

    def detect_bytes(
        self,
        data: bytes,
        cfg: PostprocessConfig,
        max_pixels: int | None,
        deadline: float | None = None,
        **tiling: Any,
    ) -> DetectionResult:
        self.calls += 1
        self.started.release()
        assert self.gate.wait(timeout=30), "test gate never opened"
        return self.inner.detect_bytes(data, cfg, max_pixels, deadline=deadline, **tiling)


@pytest.fixture
def make_settings(tiny_onnx_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"model_path": tiny_onnx_path, "threads": 1, "workers": 1}
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def serve(make_settings: Callable[..., Settings]) -> AppFactory:
    """`with serve(loader=..., ready=True, **settings) as (app, client):` a running app."""

    @contextmanager
    def run(
        loader: Loader | None = None, ready: bool = True, **overrides: Any
    ) -> Iterator[tuple[FastAPI, TestClient]]:
        app = create_app(make_settings(**overrides), loader=loader)
        with TestClient(app, raise_server_exceptions=False) as client:
            if ready:
                wait_ready(client)
            yield app, client

    return run


@pytest.fixture
def client(serve: AppFactory) -> Iterator[TestClient]:
    with serve() as (_, c):
        yield c


@pytest.fixture
def gated_serve(serve: AppFactory) -> AppFactory:
    """`with gated_serve(**settings) as (app, client, detector):` the detector can be held."""

    @contextmanager
    def run(**overrides: Any) -> Iterator[tuple[FastAPI, TestClient, GatedDetector]]:
        holder: list[GatedDetector] = []

        def loader(path: Path, threads: int) -> Detector:
            holder.append(GatedDetector(OnnxDetector(path, threads)))
            return holder[0]

        with serve(loader=loader, **overrides) as (app, c):
            try:
                yield app, c, holder[0]
            finally:
                holder[0].gate.set()

    return run
