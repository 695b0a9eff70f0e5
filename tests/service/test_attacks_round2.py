"""The second round of decode-cost and body-shape attacks against `python -m service` as a
real process: a progressive-JPEG scan bomb, work that goes on after the client got its 504,
1-byte chunked uploads, an annotated 40 MP image, the unknown-class echo, the bearer scheme's
case. (The /v2 bodies: test_oip_hardening.py; model files: test_model_files.py.) Localhost
only; every loop is bounded in count and time; the hostile files are made here."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from bench.attacks.images import encode, jpeg, progressive_scan_bomb
from bench.attacks.server import Server, ready_server
from bench.attacks.stalls import drip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_onnx_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with ready_server(tmp_path_factory.mktemp("attacks-round2"), tiny_onnx_path,
                      DETECTOR_WORKERS="2", DETECTOR_ADMIN_RELOAD="true",
                      DETECTOR_ADMIN_TOKEN="s3cret") as srv:  # fmt: skip
        yield srv


def test_progressive_scan_bomb_is_refused_before_decoding(server: Server) -> None:
    """6000 x 6000 grey, its last scan repeated 1,000 times (~200 KB): ~25 s of decode CPU
    before; now 413 after counting the scans, and a normal photo meanwhile gets 200."""
    bomb = progressive_scan_bomb(6000, 1000)
    assert len(bomb) < 300_000
    cpu0 = server.quiet_cpu_seconds()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        t0 = time.perf_counter()
        codes = [c.post("/detect", content=bomb).status_code for _ in range(2)]
        elapsed = time.perf_counter() - t0
        b64 = base64.b64encode(bomb).decode()
        batch = c.post("/detect/batch", json={"images": [b64] * 3})
        normal = c.post("/detect", content=jpeg())
    assert codes == [413, 413] and elapsed < 2.0, (codes, elapsed)
    assert [r["error"]["code"] for r in batch.json()["results"]] == ["image_too_large"] * 3
    assert "scans" in batch.json()["results"][0]["error"]["message"]
    assert normal.status_code == 200
    assert server.quiet_cpu_seconds() - cpu0 < 3.0


def test_work_past_the_deadline_stops_soon_after(server: Server) -> None:
    """A batch of 16 allowed but slow JPEGs (36 MP, 16 scans: ~0.35 s each, ~5 s in all) with
    `timeout_ms=300`: 504 at the deadline, and the server stops spending CPU on it soon after
    (it used to decode all 16 on a thread that cannot be cancelled)."""
    slow = progressive_scan_bomb(6000, 10)
    b64 = base64.b64encode(slow).decode()
    cpu0 = server.quiet_cpu_seconds()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        t0 = time.perf_counter()
        r = c.post("/detect/batch?timeout_ms=300", json={"images": [b64] * 16})
        answered = time.perf_counter() - t0
        spent = server.quiet_cpu_seconds() - cpu0
        normal = c.post("/detect", content=jpeg())
    assert r.status_code == 504 and answered < 2.0, (r.status_code, answered)
    assert spent < 1.5, f"{spent:.2f} s of CPU for a request answered after {answered:.2f} s"
    assert normal.status_code == 200


def test_one_byte_chunks_are_refused(server: Server) -> None:
    """Three connections sending 1 MB as 1-byte chunks: each gets a 400 after a thousand chunks
    or so, and a normal /detect meanwhile keeps its usual latency (it took 7-9 s before)."""
    answers: list[bytes] = []
    threads = [threading.Thread(target=drip, args=(server.port, 1_000_000, answers))
               for _ in range(3)]  # fmt: skip
    for t in threads:
        t.start()
    latencies = []
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for _ in range(5):
            t0 = time.perf_counter()
            assert c.post("/detect", content=jpeg()).status_code == 200
            latencies.append(time.perf_counter() - t0)
    for t in threads:
        t.join(timeout=60)
    assert len(answers) == 3
    for a in answers:
        assert a.startswith(b"HTTP/1.1 400") and b"larger chunks" in a, a[:300]
    assert sorted(latencies)[2] < 1.0, latencies
    ok = httpx.post(server.url + "/detect", content=jpeg(),
                    headers={"transfer-encoding": "chunked"})  # fmt: skip
    assert ok.status_code == 200  # ordinary chunked uploads still pass


def test_annotated_output_of_a_large_image_is_scaled_down(server: Server) -> None:
    big = encode(Image.new("RGB", (7000, 5000), (90, 120, 150)), "JPEG", quality=90)
    cpu0 = server.quiet_cpu_seconds()
    r = httpx.post(server.url + "/detect?annotate=true&format=png", content=big, timeout=60)
    assert r.status_code == 200, r.text
    img = Image.open(__import__("io").BytesIO(r.content))
    assert img.size == (1750, 1250) and len(r.content) < 10_000_000
    assert server.quiet_cpu_seconds() - cpu0 < 3.0


def test_unknown_class_answer_does_not_echo_the_url(server: Server) -> None:
    names = ",".join(f"made-up-class-{i:05d}" for i in range(600))  # ~12 KB of query
    r = httpx.post(server.url + "/detect", params={"classes": names}, content=jpeg())
    assert r.status_code == 422 and len(r.content) < 1000, len(r.content)
    assert "and 595 more" in r.json()["error"]["message"]


def test_bearer_scheme_is_case_insensitive(server: Server) -> None:
    """RFC 7235: `bearer` is the same scheme as `Bearer`; the token itself is exact."""
    for header, status in (("bearer s3cret", 200), ("BEARER s3cret", 200), ("Bearer s3cret", 200),
                           ("Bearer S3CRET", 401), ("Basic s3cret", 401), ("bearers3cret", 401)):
        r = httpx.post(server.url + "/admin/reload", headers={"authorization": header}, timeout=60)
        assert r.status_code == status, (header, r.text)
