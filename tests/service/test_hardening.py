"""App-level limits and the small fixes a newcomer asked for: multipart parts, the
upload memory budget, header size, the status -> outcome map, /docs offline, HEAD /, the
command line, connection limits and log rate limiting."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bench.attacks.images import jpeg, multipart
from bench.attacks.server import REPO
from service.__main__ import settings_from_args
from service.connections import BACKLOG, FD_RESERVE, RateLimitFilter, connection_limit
from service.errors import OUTCOMES, ServiceError, outcome_for
from tests import wait_until

AppFactory = Callable[..., Any]
MULTIPART = {"content-type": "multipart/form-data; boundary=b0undary"}


def test_multipart_parts_are_bounded(client: TestClient) -> None:
    extra = [(f"x{i}", b"1", "text/plain") for i in range(15)]
    ok = client.post("/detect", content=multipart([*extra, ("image", jpeg(), "image/jpeg")]),
                     headers=MULTIPART)  # fmt: skip
    assert ok.status_code == 200  # 16 parts
    flood = multipart([*extra, ("y", b"1", "text/plain"), ("image", jpeg(), "image/jpeg")])
    r = client.post("/detect", content=flood, headers=MULTIPART)
    assert r.status_code == 400 and "more than 16 parts" in r.json()["error"]["message"]
    long_header = multipart([("image", jpeg(), "image/jpeg")]).replace(
        b"Content-Type: image/jpeg", b"Content-Type: image/jpeg; x=" + b"a" * 9000
    )
    assert client.post("/detect", content=long_header, headers=MULTIPART).status_code == 400


def test_upload_memory_budget(serve: AppFactory) -> None:
    body = jpeg(640, 480)
    with serve(max_upload_memory_bytes=len(body) - 1) as (app, client):
        r = client.post("/detect", content=body)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "overloaded"
        assert app.state.engine.upload_budget.used == 0  # released
        assert client.post("/detect", content=jpeg(32, 32)).status_code == 200
        assert app.state.engine.upload_budget.used == 0


def test_oversized_headers_get_431(client: TestClient) -> None:
    r = client.get("/health/live", headers={"x-big": "a" * 20_000})
    assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large"
    assert r.headers["connection"] == "close"
    assert client.get("/health/live", headers={"x-ok": "a" * 1000}).status_code == 200


def test_outcome_map_is_derived_from_the_error_classes() -> None:
    classes = ServiceError.__subclasses__()
    assert {c.outcome for c in classes} | {"ok", "error"} == set(OUTCOMES)
    for cls in classes:
        if cls.status != 503:  # shared by not_ready / shutting_down / overloaded
            assert outcome_for(cls.status) == cls.outcome, cls
    assert outcome_for(503) == "overloaded" and outcome_for(200) == "ok"
    assert outcome_for(405) == "bad_request" and outcome_for(500) == "error"


def test_docs_work_offline(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(assets) >= 3
    for url in assets:
        assert url.startswith("/docs/assets/"), url
        assert client.get(url).status_code == 200, url
    assert client.get("/openapi.json").json()["openapi"].startswith("3.")


def test_head_root(client: TestClient) -> None:
    r = client.head("/")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-type"].startswith("text/html")


def test_help_prints_and_exits() -> None:
    out = subprocess.run([sys.executable, "-m", "service", "--help"], cwd=REPO, timeout=60,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    for text in ("--host", "--port", "--model", "DETECTOR_BODY_TIMEOUT_S", "DETECTOR_MAX_PIXELS"):
        assert text in out.stdout
    assert "Uvicorn running" not in out.stdout + out.stderr


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETECTOR_PORT", "9001")
    monkeypatch.setenv("DETECTOR_HOST", "127.0.0.2")
    s = settings_from_args(["--port", "18123", "--model", "some/model.onnx", "--threads", "3"])
    assert (s.port, s.model_path, s.threads, s.host) == (18123, Path("some/model.onnx"), 3,
                                                         "127.0.0.2")  # fmt: skip
    assert settings_from_args([]).port == 9001
    with pytest.raises(SystemExit):
        settings_from_args(["--port", "http"])


def test_connection_limit_fits_the_open_file_limit() -> None:
    assert connection_limit(256, 1 << 20) == 256
    assert connection_limit(256, 1024) == 256
    assert connection_limit(256, 256) == 256 - BACKLOG - FD_RESERVE
    assert connection_limit(256, 100) == 1


def test_rate_limit_filter() -> None:
    f = RateLimitFilter(interval_s=60)

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, "", 0, msg, (), None)

    passed = [f.filter(record("socket.accept() out of system resource")) for _ in range(1000)]
    assert sum(passed) == 1
    assert f.filter(record("something else"))


def test_model_load_failure_shows_no_directories(serve: AppFactory, tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx file")
    with serve(model_path=bad, ready=False) as (app, client):
        wait_until(lambda: app.state.engine.state() != "loading", 20,
                   what="the broken file was still loading")  # fmt: skip
        message = client.get("/health/ready").json()["error"]["message"]
    assert "broken.onnx" in message and str(tmp_path) not in message and "/" not in message
