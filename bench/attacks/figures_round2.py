"""The second round of attacks as figures (not a test): for each, start `python -m service`
from a tree (bundled model, defaults), run the attack on localhost with a normal /detect sent
0.3 s into it, and print one line: the attack's statuses and time, the server's CPU seconds
until it is quiet again, its peak RSS, and what the normal request got.

    PYTHONPATH=$PWD python -m bench.attacks.figures_round2 [--tree DIR] ATTACK...
        (scanbomb deadline outputs elements binelements errors drip loop constshape
         annotate sighup classes bearer)

`--tree` runs another checkout (e.g. the base commit) with these same attacks; the hostile
files are made here, in memory.
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.attacks import stalls
from bench.attacks.images import jpeg, progressive_scan_bomb
from bench.attacks.server import REPO, Server, run_server

DEFAULT_MODEL = REPO / "models" / "default.onnx"
Attack = Callable[[Server], str]  # runs the attack, returns what it got


def _post(srv: Server, path: str, timeout: float = 300, **kw: object) -> httpx.Response:
    return httpx.post(srv.url + path, timeout=timeout, **kw)  # type: ignore[arg-type]


def _infer(srv: Server, body: bytes, **headers: str | bytes) -> httpx.Response:
    name = httpx.get(srv.url + "/model").json()["name"]
    return _post(srv, f"/v2/models/{name}/infer", content=body, headers=headers)


def _tensor(images: list[str]) -> dict[str, object]:
    return {"name": "image", "datatype": "BYTES", "shape": [len(images)], "data": images}


def scanbomb(srv: Server) -> str:
    bomb = progressive_scan_bomb(6000, 1000)
    out: list[int] = []
    ts = [threading.Thread(target=lambda: out.append(
        _post(srv, "/detect?timeout_ms=2000", content=bomb).status_code)) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return f"2 x {len(bomb) // 1000} kB, timeout_ms=2000: {sorted(out)}"


def deadline(srv: Server) -> str:
    b64 = base64.b64encode(progressive_scan_bomb(6000, 10)).decode()
    r = _post(srv, "/detect/batch?timeout_ms=300", json={"images": [b64] * 16})
    return f"16 slow JPEGs, timeout_ms=300: {r.status_code}"


def outputs(srv: Server) -> str:
    """16 images, every detection kept (1,000 each), `boxes` asked for 2,000 times."""
    b64 = base64.b64encode(jpeg(640, 480)).decode()
    doc = {"inputs": [_tensor([b64] * 16)], "outputs": [{"name": "boxes"}] * 2000,
           "parameters": {"score_threshold": 0.0, "max_detections": 1000}}  # fmt: skip
    body = json.dumps(doc).encode()
    r = _infer(srv, body, **{"content-type": "application/json"})
    return f"{len(body) // 1000} kB, outputs x2000: {r.status_code}, {len(r.content) / 1e6:.0f} MB"


def elements(srv: Server) -> str:
    n = 14_900_000
    body = (b'{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"data":' + b"[" * 100
            + b'"",' * n + b'""' + b"]" * 100 + b"}]}")  # fmt: skip
    r = _infer(srv, body, **{"content-type": "application/json"})
    return f"{len(body) / 1e6:.1f} MB, {n / 1e6:.1f} M empty strings: {r.status_code}"


def binelements(srv: Server) -> str:
    blob = struct.pack("<I", 0) * 8_000_000
    head = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                   "parameters": {"binary_data_size": len(blob)}}]}).encode()
    r = _infer(srv, head + blob, **{"inference-header-content-length": str(len(head))})
    return f"8 M zero-length binary elements: {r.status_code}"


def errors(srv: Server) -> str:
    b64 = base64.b64encode(jpeg()).decode()
    ok = {"inputs": [_tensor([b64])]}
    hostile: list[tuple[bytes, dict[str, str | bytes]]] = [
        (json.dumps({**ok, "outputs": [{"name": ["boxes"]}]}).encode(), {}),
        (json.dumps({**ok, "outputs": [{"name": "boxes", "parameters": ["x"]}]}).encode(), {}),
        (json.dumps(ok).encode(), {"inference-header-content-length": b"\xb2"}),
        (json.dumps(ok).encode(), {"inference-header-content-length": "9" * 5000}),
        (b'{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"data":'
         + b"[" * 700 + b'""' + b"]" * 700 + b"}]}", {}),
    ]
    codes = [_infer(srv, body, **headers).status_code for body, headers in hostile]
    deep = b"[" * 5000 + b"]" * 5000
    codes.append(_post(srv, "/detect", content=deep,
                       headers={"content-type": "application/json"}).status_code)
    tracebacks = srv.log_path.read_text().count("Traceback")
    longest = max(len(line) for line in srv.log_path.read_text().splitlines())
    return f"statuses {codes}, {tracebacks} tracebacks, longest log line {longest}"


def drip(srv: Server) -> str:
    answers: list[bytes] = []
    ts = [threading.Thread(target=stalls.drip, args=(srv.port, 1_000_000, answers))
          for _ in range(3)]  # fmt: skip
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return "3 x 1 MB in 1-byte chunks: " + str(sorted(a.split(b" ")[1].decode() for a in answers))


def _hostile_reload(kind: str) -> Attack:
    def attack(srv: Server) -> str:
        from bench.attacks import hostile_models

        tmp = Path(tempfile.mkdtemp())
        build = {"loop": hostile_models.endless_loop,
                 "constshape": hostile_models.constant_of_shape}[kind]  # fmt: skip
        model = Path(srv.env["DETECTOR_MODEL_PATH"])
        hostile = build(DEFAULT_MODEL, tmp / "hostile.onnx")
        model.rename(tmp / "good.onnx")
        hostile.rename(model)
        try:
            r = _post(srv, "/admin/reload", timeout=90)
            return f"reload {kind}: {r.status_code} {r.text[:80]}"
        except httpx.TimeoutException:
            return f"reload {kind}: no answer in 90 s"

    return attack


def annotate(srv: Server) -> str:
    from PIL import Image

    from bench.attacks.images import encode

    big = encode(Image.effect_noise((7300 // 8, 5470 // 8), 40).convert("RGB")
                 .resize((7300, 5470)), "JPEG", quality=90)  # fmt: skip
    r = _post(srv, "/detect?annotate=true&format=png", content=big)
    return f"40 MP annotate=true&format=png: {r.status_code}, {len(r.content) / 1e6:.1f} MB"


def sighup(srv: Server) -> str:
    for _ in range(25):
        srv.proc.send_signal(signal.SIGHUP)
    _quiet_cpu(srv)
    reloads = srv.log_path.read_text().count('"model reloaded"')
    return f"25 SIGHUPs: {reloads} reloads"


def classes(srv: Server) -> str:
    names = ",".join(f"made-up-class-{i:05d}" for i in range(600))
    r = _post(srv, "/detect", params={"classes": names}, content=jpeg())
    return f"{len(names) // 1000} kB of unknown classes: {r.status_code}, {len(r.content)} B"


def bearer(srv: Server) -> str:
    r = _post(srv, "/admin/reload", headers={"authorization": "bearer s3cret"})
    return f"lowercase 'bearer': {r.status_code}"


ATTACKS: dict[str, Attack] = {
    "scanbomb": scanbomb, "deadline": deadline, "outputs": outputs, "elements": elements,
    "binelements": binelements, "errors": errors, "drip": drip,
    "loop": _hostile_reload("loop"), "constshape": _hostile_reload("constshape"),
    "annotate": annotate, "sighup": sighup, "classes": classes, "bearer": bearer,
}  # fmt: skip
ADMIN = {"loop", "constshape", "sighup", "bearer"}


def _quiet_cpu(srv: Server) -> float:
    """CPU seconds once the server is quiet, or after 300 s of a server that never is."""
    try:
        return srv.quiet_cpu_seconds(quiet_s=0.5, idle_cpu_s=0.03, timeout_s=300.0)
    except TimeoutError:
        return srv.cpu_seconds()


def figure(srv: Server, attack: Attack) -> str:
    cpu0 = srv.cpu_seconds()
    normal: list[str] = []

    def send_normal() -> None:
        time.sleep(0.3)
        t0 = time.perf_counter()
        try:
            code = _post(srv, "/detect", content=jpeg(), timeout=120).status_code
        except (TimeoutError, httpx.TransportError) as exc:
            code = type(exc).__name__  # type: ignore[assignment]
        normal.append(f"{code} in {time.perf_counter() - t0:.2f} s")

    side = threading.Thread(target=send_normal)
    side.start()
    t0 = time.perf_counter()
    got = attack(srv)
    took = time.perf_counter() - t0
    side.join()
    cpu = _quiet_cpu(srv) - cpu0
    alive = srv.proc.poll() is None
    peak = srv.rss_bytes("VmHWM") // 2**20 if alive else -1
    return (f"{got} | {took:.2f} s | server CPU {cpu:.2f} s | peak RSS {peak} MiB | "
            f"normal /detect meanwhile: {normal[0]}" + ("" if alive else " | server died"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("attacks", nargs="+", choices=sorted(ATTACKS))
    p.add_argument("--tree", type=Path, default=REPO)
    p.add_argument("--logs", type=Path, default=Path("/tmp/attack-figures-round2"))
    args = p.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    for name in args.attacks:
        model = Path(tempfile.mkdtemp()) / "model.onnx"
        model.write_bytes(DEFAULT_MODEL.read_bytes())
        env = {"DETECTOR_MODEL_PATH": str(model)}
        if name in ADMIN:
            env.update(DETECTOR_ADMIN_RELOAD="true", DETECTOR_ADMIN_TOKEN="s3cret"
                       if name == "bearer" else "")  # fmt: skip
            if name != "bearer":
                env.pop("DETECTOR_ADMIN_TOKEN")
        with run_server(args.logs, tree=args.tree, **env) as srv:
            srv.env = env  # type: ignore[attr-defined]
            srv.wait_ready()
            print(f"{name}: {figure(srv, ATTACKS[name])}", flush=True)
            srv.proc.send_signal(signal.SIGTERM)
            try:
                code: object = srv.proc.wait(timeout=40)
            except Exception:
                code = "still running 40 s after SIGTERM"
            print(f"{name}: SIGTERM -> exit {code}", flush=True)


if __name__ == "__main__":
    main()
