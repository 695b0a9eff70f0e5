"""Podman for the container tests (test_container_image.py, test_compose_stack.py): the engine's
settings, the stand-in base images, the detector image build, the compose file's settings as
`podman run` flags, and the figures file the runs write.

Skips only where podman cannot run (not installed, not root, `podman info` fails); with
FCOS_CONTAINER_REQUIRED=1 (scripts/container-smoke.sh) that is a failure instead."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.helpers import COMPOSE_FILE, DOCKERFILE, REPO, compose_command

STAND_IN = REPO / "docker" / "stand-in"
DETECTOR_TAG = "localhost/fcos-detector:local"
# what docker/Dockerfile's PYTHON_IMAGE (python:3.11-slim) is replaced with
PYTHON_STAND_IN = "localhost/python:3.11-slim"
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
FIGURES_ENV = "FCOS_CONTAINER_FIGURES"
# debootstrap's root filesystems, the build's pip.conf and log (as docker/stand-in/build-images.sh)
WORKDIR = Path(os.environ.get("STAND_IN_WORKDIR", "/var/tmp/fcos-stand-in"))
REQUIRED_ENV = "FCOS_CONTAINER_REQUIRED"


def engine_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["CONTAINERS_CONF"] = str(STAND_IN / "containers.conf")
    env["CONTAINERS_STORAGE_CONF"] = str(STAND_IN / "storage.conf")
    return env


def unavailable_reason() -> str | None:
    """Why podman cannot run here, or None."""
    hint = "run `bash .ci/install-deploy-tools.sh` as root to install it"
    for tool in ("podman", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: {hint}"
    if os.geteuid() != 0:
        return "the container tests run podman as root (vfs storage, host cgroups)"
    try:
        info = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`podman info` did not run: {exc}"
    if info.returncode != 0:
        return f"`podman info` failed: {info.stderr.strip()[-500:]}"
    return None


def require_podman() -> None:
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get(REQUIRED_ENV) == "1":
        pytest.fail(f"{REQUIRED_ENV}=1 but podman cannot run: {reason}")
    pytest.skip(reason)


def podman(*args: str, check: bool = True, timeout: float = 300, **kw: Any):
    """Run `podman ARGS` (text output captured)."""
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                          env=engine_env(), **kw)  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} -> {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


def stray_bridges() -> str:
    """Why published ports may time out here: a CNI bridge left by a bare `podman run` (without
    docker/stand-in/containers.conf) on the subnet of netavark's `podman0`; else ""."""
    if Path("/sys/class/net/cni-podman0").exists():
        return ("a CNI bridge `cni-podman0` shares netavark's subnet (left by a `podman` run "
                "without CONTAINERS_CONF): remove it with `ip link delete cni-podman0`")
    return ""


def qualified(image: str) -> str:
    """The name podman stores an image under: `nginx:1` -> `docker.io/library/nginx:1`."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image}" if rest else f"docker.io/library/{image}"


def ensure_stand_ins(**images: str) -> float:
    """Build the missing stand-in images (kind=tag, see docker/stand-in/build-images.sh);
    returns the seconds it took (0 when all were present)."""
    specs = [f"{kind}={qualified(tag)}" for kind, tag in images.items()]
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(STAND_IN / "build-images.sh"), *specs], capture_output=True,
                          text=True, timeout=1800, env=engine_env())  # fmt: skip
    assert proc.returncode == 0, f"stand-in images failed:\n{proc.stderr[-3000:]}"
    return time.monotonic() - t0


def build_detector(workdir: Path = WORKDIR) -> float:
    """`podman build` of docker/Dockerfile exactly, on the stand-in base (built first when
    missing); returns the build's seconds.
    Layers are cached by podman, so a second build in one CI run takes seconds. The host's CA
    bundle is lent to pip (mounted, not copied: nothing of it stays in the image)."""
    seconds = ensure_stand_ins(python=PYTHON_STAND_IN)
    if seconds > 5:  # built now, not found
        record(stand_in_python_s=round(seconds, 1))
    mounts: list[str] = []
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.is_file():
        workdir.mkdir(parents=True, exist_ok=True)
        pip_conf = workdir / "pip.conf"  # a fixed path: podman's layer cache keys on mounts
        pip_conf.write_text(f"[global]\ncert = {bundle}\n")
        mounts = ["--volume", "/etc/ssl/certs:/etc/ssl/certs:ro",
                  "--volume", f"{pip_conf}:/etc/pip.conf:ro"]  # fmt: skip
    t0 = time.monotonic()
    proc = podman("build", "--format", "docker",  # keeps HEALTHCHECK (OCI drops it)
                  "--network", "host", *ULIMITS, *mounts,
                  "--build-arg", f"PYTHON_IMAGE={PYTHON_STAND_IN}",
                  "--file", str(DOCKERFILE), "--tag", DETECTOR_TAG, str(REPO),
                  timeout=1800)  # fmt: skip
    (workdir / "build.log").write_text(proc.stdout + proc.stderr)
    # Each rebuild leaves the last one's layers untagged, full copies under vfs (~390 MB a
    # build): drop those older than an hour, keeping this run's cache; a disk filled so made
    # a later build fail with "no space left on device".
    podman("image", "prune", "--force", "--filter", "until=1h", check=False)
    return time.monotonic() - t0


def compose_config(home: Path, *profiles: str, env: dict[str, str] | None = None) -> dict:
    """`docker compose config` (v2): the compose file with anchors, defaults and interpolation
    resolved by Compose itself."""
    import yaml

    cli = compose_command()
    if cli is None:
        pytest.skip("no Docker Compose v2 CLI: run `bash .ci/install-deploy-tools.sh`")
    argv = [*cli, "-f", str(COMPOSE_FILE)]
    for p in profiles:
        argv += ["--profile", p]
    clean = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), **(env or {})}
    proc = subprocess.run([*argv, "config"], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env=clean)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def run_flags(service: dict) -> list[str]:
    """A compose service's runtime and security settings as `podman run` flags (environment,
    read-only root, tmpfs, capabilities, security options, user, CPU and memory limits).
    Variables without a value (compose passes them on only when the shell sets them) are left
    out, as are bind mounts: the image's own /app/models (default.onnx) is the repository."""
    flags: list[str] = []
    for key, value in sorted((service.get("environment") or {}).items()):
        if value is not None:
            flags += ["--env", f"{key}={value}"]
    if service.get("read_only"):
        flags.append("--read-only")
    for mount in service.get("tmpfs") or []:
        flags += ["--tmpfs", mount]
    for cap in service.get("cap_drop") or []:
        flags += ["--cap-drop", cap]
    for cap in service.get("cap_add") or []:
        flags += ["--cap-add", cap]
    for opt in service.get("security_opt") or []:
        flags += ["--security-opt", opt]
    if service.get("user"):
        flags += ["--user", str(service["user"])]
    if service.get("mem_limit"):
        flags += ["--memory", str(service["mem_limit"])]
    if service.get("cpus"):
        flags += ["--cpus", str(service["cpus"])]
    if service.get("pids_limit"):
        flags += ["--pids-limit", str(service["pids_limit"])]
    return flags


def peak_memory_bytes(container: str) -> int:
    """The container cgroup's peak memory (cgroup v2 memory.peak or v1 max_usage_in_bytes)."""
    path = podman("inspect", "--format", "{{.State.CgroupPath}}", container).stdout.strip()
    rel = path.lstrip("/")
    for candidate in (Path("/sys/fs/cgroup", rel, "memory.peak"),
                      Path("/sys/fs/cgroup/memory", rel, "memory.max_usage_in_bytes")):  # fmt: skip
        if candidate.is_file():
            return int(candidate.read_text())
    raise AssertionError(f"no peak-memory file for cgroup {path}")


def record(**figures: Any) -> None:
    """Merge measured figures into $FCOS_CONTAINER_FIGURES (JSON), when set."""
    target = os.environ.get(FIGURES_ENV)
    if not target:
        return
    path = Path(target)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(figures)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def photos(n: int) -> list[Path]:
    """Real photos: VOC 2012 val from the shared data beside the clone ($VOC_ROOT overrides),
    else the repo's models/pictures."""
    voc = Path(os.environ.get("VOC_ROOT", REPO.parent / "shared" / "data" / "voc2012-640"))
    split = voc / "ImageSets" / "Main" / "val.txt"
    if split.is_file():
        ids = split.read_text().split()[:n]
        found = [voc / "JPEGImages" / f"{i}.jpg" for i in ids]
        if found and all(p.is_file() for p in found):
            return found
    return sorted((REPO / "models" / "pictures").glob("*.jpg"))[:n]
