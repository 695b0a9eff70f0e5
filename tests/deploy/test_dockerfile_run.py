"""docker/Dockerfile's install and start steps work as written, with no Docker daemon: the
builder's COPY and RUN lines run in a fresh venv under a temporary directory (container paths
re-rooted there), then the final stage's CMD serves a real model and its HEALTHCHECK answers."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from bench.http_load import free_port
from tests.deploy.helpers import (
    DOCKERFILE,
    REPO,
    TORCH_LIKE,
    USER_SETUP,
    Stage,
    copy_sources,
    parse_dockerfile,
    parse_env_args,
    substitute,
    wait_for_status,
)


class Rootfs:
    """Container paths re-rooted under a temp dir: /opt/venv -> <tmp>/rootfs/opt/venv etc.
    Only absolute paths that the Dockerfile itself creates (WORKDIR, COPY destinations,
    $VIRTUAL_ENV) are re-rooted; everything else is left exactly as written."""

    def __init__(self, root: Path, container_paths: set[str]) -> None:
        self.root = root
        prefixes = sorted(container_paths, key=len, reverse=True)
        self._re = re.compile(
            r"(?<![\w./-])(" + "|".join(re.escape(p) for p in prefixes) + r")(?=[/:\"'\s]|$)"
        )

    def path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def text(self, s: str) -> str:
        return self._re.sub(lambda m: str(self.path(m.group(1))), s)


def _container_paths(df) -> set[str]:
    paths: set[str] = set()
    for stage in df.stages:
        for instr in stage.of("WORKDIR"):
            paths.add(instr.args.strip())
        for instr in stage.of("COPY"):
            sources, dest, flags = copy_sources(instr)
            if dest.startswith("/"):
                paths.add(dest.rstrip("/"))
            if "from" in flags:
                paths |= {s.rstrip("/") for s in sources}
        for key, value in (kv for i in stage.of("ENV") for kv in parse_env_args(i.args)):
            if key == "VIRTUAL_ENV":
                paths.add(value)
    return {p for p in paths if p.startswith("/") and p != "/"}


def _copy_into(src: Path, dest: Path) -> None:
    if src.is_dir():
        shutil.copytree(
            src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)


def _base_env() -> dict[str, str]:
    """The environment a RUN/CMD sees before the stage's ENV: the host's, minus anything that
    would leak the test's own venv; `python` is this interpreter's (its venv's base Python)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
           and not k.startswith("DETECTOR_")}  # fmt: skip
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _run_stage(
    stage: Stage, rootfs: Rootfs, base_env: dict[str, str], run_runs: bool, log: list[str]
) -> tuple[dict[str, str], Path]:
    """Apply a stage's ENV/WORKDIR/COPY and (builder) RUN in order; return its env and cwd."""
    env = dict(base_env)
    cwd = rootfs.root
    for instr in stage.instructions:
        if instr.keyword == "ENV":
            for key, value in parse_env_args(instr.args):
                env[key] = substitute(rootfs.text(value), env)
        elif instr.keyword == "WORKDIR":
            cwd = rootfs.path(instr.args.strip())
            cwd.mkdir(parents=True, exist_ok=True)
        elif instr.keyword == "COPY":
            sources, dest, flags = copy_sources(instr)
            target = rootfs.path(dest) if dest.startswith("/") else cwd / dest
            for src in sources:
                if "from" in flags:  # from another stage: same rootfs
                    origin = rootfs.path(src)
                    if origin.resolve() != target.resolve():
                        _copy_into(origin, target)
                    continue
                origin = REPO / src
                if not origin.exists():
                    log.append(f"COPY {src}: not in the repo, skipped")
                    continue
                if src.endswith("/") or origin.is_dir():
                    _copy_into(origin, target)
                elif dest.endswith("/") or len(sources) > 1:
                    _copy_into(origin, target / origin.name)
                else:
                    _copy_into(origin, target)
        elif instr.keyword == "RUN":
            if not run_runs:
                assert USER_SETUP.match(instr.args), instr.args
                continue
            cmd = rootfs.text(instr.args)
            form = instr.exec_form()
            argv = [rootfs.text(a) for a in form] if form else ["/bin/sh", "-c", cmd]
            log.append(f"RUN {argv}")
            proc = subprocess.run(
                argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900
            )
            assert proc.returncode == 0, (
                f"Dockerfile line {instr.line} failed ({proc.returncode}): {argv}\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            )
    return env, cwd


def _healthcheck_argv(stage: Stage, rootfs: Rootfs) -> list[str]:
    (instr,) = stage.of("HEALTHCHECK")
    text = instr.args
    m = re.search(r"(?:^|\s)CMD\s+(.*)$", text, re.DOTALL)
    assert m, text
    cmd = m.group(1).strip()
    if cmd.startswith("["):
        return [rootfs.text(a) for a in json.loads(cmd)]
    return ["/bin/sh", "-c", rootfs.text(cmd)]


@pytest.mark.slow
def test_install_and_start_steps_run_as_written_in_a_fresh_venv(tmp_path, tiny_onnx_path):
    df = parse_dockerfile(DOCKERFILE)
    rootfs = Rootfs(tmp_path / "rootfs", _container_paths(df))
    log: list[str] = []
    base_env = _base_env()

    # builder: COPY + RUN, as written (re-rooted paths only)
    builder_env, _ = _run_stage(df.stage("builder"), rootfs, base_env, True, log)
    venv = Path(builder_env["VIRTUAL_ENV"])
    assert venv.is_relative_to(rootfs.root), venv
    # the builder removes pip from the venv: list the distributions through importlib.metadata
    listing = ("import importlib.metadata as m, json;"
               " print(json.dumps([d.metadata['Name'] for d in m.distributions()]))")
    listed = subprocess.run([str(venv / "bin" / "python"), "-c", listing],
                            capture_output=True, text=True, check=True)  # fmt: skip
    names = json.loads(listed.stdout)
    assert not [n for n in names if TORCH_LIKE.match(n)], names
    assert {"onnxruntime", "fastapi", "uvicorn"} <= {n.lower() for n in names}

    # runtime: ENV/WORKDIR/COPY (its RUN lines only create the user and are not run)
    env, cwd = _run_stage(df.final, rootfs, base_env, False, log)
    port = free_port()
    env.update(
        DETECTOR_MODEL_PATH=str(tiny_onnx_path),
        DETECTOR_PORT=str(port),
        DETECTOR_HOST="127.0.0.1",  # tests bind loopback only; the image binds 0.0.0.0
        DETECTOR_THREADS="1",
    )
    (cmd,) = df.final.of("CMD")
    argv = [rootfs.text(a) for a in (cmd.exec_form() or shlex.split(cmd.args))]
    exe = shutil.which(argv[0], path=env["PATH"])
    assert exe and Path(exe).parent == venv / "bin", f"{argv[0]} resolves to {exe}, not the venv"

    health = _healthcheck_argv(df.final, rootfs)
    closed_env = dict(env, DETECTOR_PORT=str(free_port()))
    assert (
        subprocess.run(health, cwd=cwd, env=closed_env, capture_output=True, timeout=30).returncode
        != 0
    ), "healthcheck must fail with no server"

    out = (tmp_path / "service.log").open("w")
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        got = wait_for_status(f"{base}/health/ready", 200, 120, proc)
        assert got == 200, f"/health/ready: {got}; exit {proc.poll()}\n" + _tail(tmp_path)
        assert wait_for_status(f"{base}/health/live", 200, 5) == 200

        # the code that answers is the image's copy in WORKDIR, running on the fresh venv
        imported = subprocess.run(
            [exe, "-c", "import service, export, onnxruntime, sys; "
             "print(service.__file__); print(export.__file__); "
             "print('torch' in sys.modules)"],
            cwd=cwd, env=env, capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        assert Path(imported[0]).is_relative_to(cwd) and Path(imported[1]).is_relative_to(cwd)
        assert imported[2] == "False"

        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
            # DETECTOR_MODEL_PATH alone: a one-model repository named by the file's stem
            ready = f'detector_model_ready{{model="{tiny_onnx_path.stem}"}} 1.0'
            assert ready in r.read().decode()

        hc = subprocess.run(health, cwd=cwd, env=env, capture_output=True, text=True, timeout=30)
        assert hc.returncode == 0, f"HEALTHCHECK failed on a ready service: {hc.stderr}"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=45) == 0, "graceful stop on SIGTERM\n" + _tail(tmp_path)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        out.close()


def _tail(tmp_path: Path) -> str:
    return (tmp_path / "service.log").read_text()[-4000:]
