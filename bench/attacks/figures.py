"""The first round of attacks as figures (not a test): start `python -m service` from a tree,
run the attacks against it on localhost, print one line per figure.

    PYTHONPATH=$PWD python -m bench.attacks.figures [--tree DIR] [--port N]
        [--nofile N] ATTACK...  (stall routes batchflood bombs peak bombloop formats multipart
        headers idle sigterm)

Each attack starts its own server (bundled model, DETECTOR_* from the environment), so peak
RSS (VmHWM) is per attack. `--tree` runs another checkout (e.g. the base commit) with these
same attacks.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from PIL import Image

from bench.attacks.images import encode, float_tiff, jpeg, outside_allow_list, png_deep
from bench.attacks.server import REPO, Server, run_server
from bench.attacks.stalls import STALLS, normal_request, stalled

Target = Server


def peak_mib(t: Target) -> int:
    return t.rss_bytes("VmHWM") // 2**20


def first_line(s: socket.socket) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    try:
        data = s.recv(65536)
    except OSError as exc:
        data = repr(exc).encode()
    return time.perf_counter() - t0, data.split(b"\r\n")[0] or b"(closed)"


def stall(t: Target) -> None:
    for n in (17, 32):
        socks = [stalled(t.port) for _ in range(n)]
        time.sleep(0.5)
        with httpx.Client(base_url=t.url, timeout=10) as c:
            codes = [c.post("/detect", content=jpeg()).status_code for _ in range(20)]
        ok = codes.count(200)
        print(f"{n} stalled uploads: {ok}/20 normal requests answered 200 {sorted(set(codes))}")
        for s in socks:
            s.close()
    waited, line = first_line(stalled(t.port))
    print(f"a stalled upload is answered after {waited:.1f} s: {line.decode()}")


def routes(t: Target, n: int = 32) -> None:
    """The stalled-upload attack on every route and body form that takes images: `n` stalled
    uploads of that form, then 20 normal requests of the same form; then one stalled upload
    of each form at once: how and when each is answered."""
    model = httpx.get(t.url + "/model").json()["name"]
    for route in STALLS:
        socks = [stalled(t.port, route, model) for _ in range(n)]
        time.sleep(0.5)
        with httpx.Client(base_url=t.url, timeout=10) as c:
            codes = [normal_request(c, route, model) for _ in range(20)]
        print(f"{route}: {n} stalled uploads: {codes.count(200)}/20 normal requests answered "
              f"200 {sorted(set(codes))}")  # fmt: skip
        for s in socks:
            s.close()
    socks = {route: stalled(t.port, route, model) for route in STALLS}
    answers: dict[str, tuple[float, bytes]] = {}
    readers = [threading.Thread(target=lambda r=r: answers.__setitem__(r, first_line(socks[r])))
               for r in STALLS]  # fmt: skip
    for th in readers:
        th.start()
    for th in readers:
        th.join()
    for route, (waited, line) in answers.items():
        print(f"{route}: a stalled upload is answered after {waited:.1f} s: {line.decode()}")
        socks[route].close()


def bombs(t: Target) -> None:
    cases = {"16-bit gray PNG 6300x6300": png_deep(6300, 6300),
             "16-bit RGBA PNG 4400x4400": png_deep(4400, 4400, 6),
             "float TIFF 6300x6300": float_tiff(6300, 6300),
             "float TIFF 64x64 of NaN": float_tiff(64, 64, float("nan"))}  # fmt: skip
    for name, data in cases.items():
        t0 = time.perf_counter()
        r = httpx.post(t.url + "/detect", content=data, timeout=120)
        print(f"{name} ({len(data) // 1024} KiB): {r.status_code} in "
              f"{time.perf_counter() - t0:.2f} s, peak RSS so far {peak_mib(t)} MiB")  # fmt: skip


def peak(t: Target) -> None:
    """The largest inputs within the limits, JSON then annotate=true: the running peak RSS."""
    rgba = Image.new("RGBA", (6300, 4700), (200, 30, 30, 128))  # 29.6 MP x 4 bytes
    rgb = Image.new("RGB", (6300, 6300), (9, 90, 9))  # 39.7 MP
    cases = {"16-bit gray PNG 6300x6300": png_deep(6300, 6300),
             "16-bit RGBA PNG 3800x3800": png_deep(3800, 3800, 6),
             "float TIFF 5400x5400": float_tiff(5400, 5400),
             "RGBA PNG 6300x4700": encode(rgba, "PNG"),
             "RGB PNG 6300x6300": encode(rgb, "PNG"),
             "JPEG 6300x6300": encode(rgb, "JPEG")}  # fmt: skip
    for query in ("", "?annotate=true"):
        for name, data in cases.items():
            t0 = time.perf_counter()
            r = httpx.post(t.url + "/detect" + query, content=data, timeout=120)
            took = time.perf_counter() - t0
            print(f"{name}{query} ({len(data) // 1024} KiB): {r.status_code} in {took:.2f} s, "
                  f"peak RSS so far {peak_mib(t)} MiB")  # fmt: skip


def bombloop(t: Target, seconds: float = 8.0) -> None:
    data, stop = png_deep(6300, 6300), threading.Event()

    def loop() -> None:
        with httpx.Client(base_url=t.url, timeout=120) as c:
            while not stop.is_set():
                c.post("/detect", content=data)

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for th in threads:
        th.start()
    time.sleep(1)
    lat: list[float] = []
    with httpx.Client(base_url=t.url, timeout=120) as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            c.post("/detect", content=jpeg(640, 480))
            lat.append(time.perf_counter() - t0)
    stop.set()
    for th in threads:
        th.join()
    lat.sort()
    print(f"4 clients looping the 16-bit PNG: normal request median {lat[len(lat) // 2]:.2f} s, "
          f"max {lat[-1]:.2f} s ({len(lat)} requests); peak RSS {peak_mib(t)} MiB")  # fmt: skip


def formats(t: Target) -> None:
    for fmt, data in outside_allow_list().items():
        r = httpx.post(t.url + "/detect", content=data, headers={"content-type": "image/jpeg"})
        print(f"{fmt} sent as image/jpeg: {r.status_code} {r.text[:100]}")


def _flood(
    t: Target, body: bytes, clients: int, path: str = "/detect",
    ctype: str = "multipart/form-data; boundary=B",
) -> tuple[list[int], list[float]]:  # fmt: skip
    """(statuses of `clients` concurrent floods, /health/live latencies meanwhile)."""
    stop, lat, codes = threading.Event(), [], []

    def probe() -> None:
        with httpx.Client(base_url=t.url, timeout=30) as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                c.get("/health/live")
                lat.append(time.perf_counter() - t0)
                time.sleep(0.05)

    def post() -> None:
        codes.append(httpx.post(t.url + path, content=body, headers={"content-type": ctype},
                                timeout=60).status_code)  # fmt: skip

    prober = threading.Thread(target=probe)
    prober.start()
    time.sleep(0.3)
    posts = [threading.Thread(target=post) for _ in range(clients)]
    for th in posts:
        th.start()
    for th in posts:
        th.join()
    time.sleep(0.3)
    stop.set()
    prober.join()
    return codes, lat


def multipart(t: Target) -> None:
    body = b"".join([b'--B\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n'] * 179_000)
    body += b"--B--\r\n"
    for clients in (1, 4):
        codes, lat = _flood(t, body, clients)
        print(f"{clients} x 9.1 MB multipart of 179,000 parts: {codes}; slowest /health/live "
              f"{1000 * max(lat):.0f} ms of {len(lat)}")  # fmt: skip


def batchflood(t: Target) -> None:
    """The multipart flood on /detect/batch (its larger part limit), and JSON bodies near the
    batch limits (base64 decoding) on /detect/batch and /v2 infer, with liveness probes."""
    model = httpx.get(t.url + "/model").json()["name"]
    body = b"".join([b'--B\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n'] * 179_000)
    body += b"--B--\r\n"
    images = [base64.b64encode(os.urandom(2 * 2**20)).decode() for _ in range(16)]
    tensor = {"name": "image", "datatype": "BYTES", "shape": [16], "data": images}
    cases = {
        "9.1 MB multipart of 179,000 parts to /detect/batch": ("/detect/batch", body,
                                                               "multipart/form-data; boundary=B"),
        "45 MB JSON, 16 x 2 MiB base64 (not images) to /detect/batch": (
            "/detect/batch", json.dumps({"images": images}).encode(), "application/json"),
        "45 MB JSON, 16 x 2 MiB base64 (not images) to /v2 infer": (
            f"/v2/models/{model}/infer", json.dumps({"inputs": [tensor]}).encode(),
            "application/json"),
    }  # fmt: skip
    for name, (path, data, ctype) in cases.items():
        for clients in (1, 4):
            codes, lat = _flood(t, data, clients, path, ctype)
            print(f"{clients} x {name}: {codes}; slowest /health/live {1000 * max(lat):.0f} ms "
                  f"of {len(lat)}; peak RSS {peak_mib(t)} MiB")  # fmt: skip


def headers(t: Target) -> None:
    print(f"HEAD /: {httpx.head(t.url + '/').status_code}")
    for name, hdrs in (("100 KB header", {"x-big": "a" * 100_000}),
                       ("10,000 headers", [(f"x-h{i}", "1") for i in range(10_000)])):  # fmt: skip
        print(f"{name}: {httpx.get(t.url + '/health/live', headers=hdrs).status_code}")
    page = httpx.get(t.url + "/docs").text
    print(f"/docs: CDN URLs in the page: {page.count('https://')}")


def idle(t: Target, n: int = 2000, wait_s: float = 8.0) -> None:
    socks = []
    for _ in range(n):
        with contextlib.suppress(OSError):
            socks.append(socket.create_connection(("127.0.0.1", t.port), timeout=2))
    time.sleep(wait_s)
    fds = len(os.listdir(f"/proc/{t.proc.pid}/fd"))
    try:
        live = str(httpx.get(t.url + "/health/live", timeout=5).status_code)
    except httpx.HTTPError as exc:
        live = type(exc).__name__
    print(f"{len(socks)} idle connections: server fds after {wait_s:.0f} s: {fds}; "
          f"/health/live meanwhile: {live}")  # fmt: skip
    for s in socks:
        s.close()


def sigterm(t: Target) -> None:
    s = stalled(t.port)
    time.sleep(0.3)
    t.proc.send_signal(signal.SIGTERM)
    waited, line = first_line(s)
    print(f"SIGTERM during a stalled upload: after {waited:.1f} s: {line.decode()}")


ATTACKS: dict[str, Callable[[Target], None]] = {
    "stall": stall, "routes": routes, "batchflood": batchflood, "bombs": bombs, "peak": peak,
    "bombloop": bombloop, "formats": formats,
    "multipart": multipart, "headers": headers, "idle": idle, "sigterm": sigterm,
}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("attacks", nargs="+", choices=sorted(ATTACKS))
    p.add_argument("--tree", type=Path, default=REPO)
    p.add_argument("--port", type=int, default=18100)
    p.add_argument("--nofile", type=int, default=None, help="the server's ulimit -n")
    p.add_argument("--logs", type=Path, default=Path("/tmp/attack-figures"))
    a = p.parse_args()
    for name in a.attacks:
        print(f"== {name} ({a.tree})", flush=True)
        env = {"DETECTOR_GRACEFUL_TIMEOUT_S": "3"} if name == "sigterm" else {}
        a.logs.mkdir(parents=True, exist_ok=True)
        with run_server(a.logs, a.nofile if name == "idle" else None, a.tree.resolve(), a.port,
                        **env) as target:  # fmt: skip
            target.wait_ready(120)
            ATTACKS[name](target)
            if target.proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    target.terminate(40)
            print(f"  (server log: {target.log_path.stat().st_size} bytes)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
