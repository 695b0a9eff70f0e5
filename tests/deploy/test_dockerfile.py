"""docker/Dockerfile and .dockerignore: the serving image installs no torch and no compilers and
runs as non-root (static checks, plus pip's resolution of the serving install). That its install
and start steps work as written is tested in test_dockerfile_run.py."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.helpers import (
    DOCKERFILE,
    INSTALL_HINT,
    REPO,
    TORCH_LIKE,
    USER_SETUP,
    Stage,
    copy_sources,
    parse_dockerfile,
    parse_env_args,
    substitute,
)

COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cmake|cargo|rustc)\b")


@pytest.fixture(scope="module")
def dockerfile():
    return parse_dockerfile()


def _env(stage: Stage, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(base or {})
    for instr in stage.of("ENV"):
        for key, value in parse_env_args(instr.args):
            env[key] = substitute(value, env)
    return env


def _project_dependencies() -> list[str]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def _req_name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", req.strip(), maxsplit=1)[0]


# --------------------------------------------------------------------------------------------
# static checks (fast)
# --------------------------------------------------------------------------------------------


def test_parser_agrees_with_buildkits(dockerfile):
    """The tests' own parser reads the Dockerfile as BuildKit does (the `dockerfile` package
    wraps BuildKit's Go parser)."""
    official = pytest.importorskip("dockerfile", reason=f"`dockerfile` (PyPI): {INSTALL_HINT}")
    theirs = [c for c in official.parse_file(str(DOCKERFILE)) if c.cmd.upper() != "ARG"]
    mine: list[tuple[str, int, object]] = []
    for stage in dockerfile.stages:
        mine.append(("FROM", stage.line, None))
        mine += [(i.keyword, i.line, i) for i in stage.instructions if i.keyword != "ARG"]
    assert [(c.cmd.upper(), c.start_line) for c in theirs] == [(k, n) for k, n, _ in mine]
    for c, (keyword, _, instr) in zip(theirs, mine, strict=True):
        if keyword == "RUN":
            assert " ".join(c.value).split() == instr.args.split()
        elif keyword == "CMD":
            assert list(c.value) == instr.exec_form()
        elif keyword == "ENV":
            pairs = parse_env_args(instr.args)
            assert list(c.value) == [x for kv in pairs for x in kv]
        elif keyword == "COPY":
            sources, dest, flags = copy_sources(instr)
            assert list(c.value) == [*sources, dest]
            assert list(c.flags) == [f"--{k}={v}" for k, v in flags.items()]


def test_stages_and_base_images(dockerfile):
    assert len(dockerfile.stages) >= 2, "multi-stage: a builder and a runtime stage"
    for stage in dockerfile.stages:
        assert stage.base == "python:3.11-slim", f"stage {stage.name}: base {stage.base}"
    assert dockerfile.stages[0].name == "builder"


def test_no_torch_in_any_install_step(dockerfile):
    installs = 0
    for stage in dockerfile.stages:
        for instr in stage.of("RUN"):
            for m in re.finditer(r"pip\"? install ([^&;|]*)", instr.args):
                installs += 1
                args = shlex.split(m.group(1))
                named = [_req_name(a) for a in args if not a.startswith("-")]
                assert not [n for n in named if TORCH_LIKE.match(n)], f"line {instr.line}: {args}"
                assert not [a for a in args if "[" in a], f"line {instr.line}: no extras: {args}"
                assert not set(args) & {"-e", "--editable", "--extra-index-url", "-r"}, args
            assert not re.search(r"\b(conda|apt-get install[^&;]*python3?-torch)", instr.args)
    assert installs, "no pip install found in the Dockerfile"


def test_pyproject_base_dependencies_have_no_torch():
    deps = [_req_name(d) for d in _project_dependencies()]
    assert deps, "pyproject has no base dependencies?"
    assert not [d for d in deps if TORCH_LIKE.match(d)], deps
    assert {"onnxruntime", "fastapi", "uvicorn", "prometheus-client"} <= {d.lower() for d in deps}


def test_builder_installs_the_project_without_extras(dockerfile):
    runs = " && ".join(i.args for i in dockerfile.stage("builder").of("RUN"))
    assert re.search(r"python\"? -m venv", runs), "builder creates a venv"
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", runs), "pip install --no-cache-dir ."


def test_final_stage_has_no_build_tools_and_runs_as_non_root(dockerfile):
    final = dockerfile.final
    for instr in final.of("RUN"):
        assert USER_SETUP.match(instr.args), (
            f"line {instr.line}: the final stage may only create the user; install steps belong "
            "in the builder stage (the fresh-venv test runs only those)"
        )
        assert not COMPILERS.search(instr.args) and "apt-get" not in instr.args
    users = final.of("USER")
    assert users, "final stage must switch to a non-root user"
    user = users[-1].args.split(":")[0].strip()
    assert user not in ("root", "0"), user
    # the runtime copies only the venv from the builder, and the run-time sources + model
    copies = [copy_sources(i) for i in final.of("COPY")]
    from_builder = [c for c in copies if c[2].get("from") == "builder"]
    assert [(c[0], c[1]) for c in from_builder] == [(["/opt/venv"], "/opt/venv")]
    context_sources = {s.rstrip("/") for c in copies if "from" not in c[2] for s in c[0]}
    assert context_sources == {"service", "export", "models"}, context_sources
    assert not final.of("ADD")


def test_final_stage_port_healthcheck_cmd_and_env(dockerfile):
    final = dockerfile.final
    env = _env(final)
    assert final.of("EXPOSE") and final.of("EXPOSE")[-1].args.split()[0] == "8000"
    assert env["DETECTOR_PORT"] == "8000" and env["DETECTOR_HOST"] == "0.0.0.0"
    assert env["DETECTOR_MODEL_PATH"] == "/app/models/default.onnx"
    assert env["PATH"].startswith(env["VIRTUAL_ENV"] + "/bin:")
    (cmd,) = final.of("CMD")
    assert cmd.exec_form() == ["python", "-m", "service"]
    (health,) = final.of("HEALTHCHECK")
    assert "/health/ready" in health.args and "urllib" in health.args
    assert "curl" not in health.args and "wget" not in health.args


def _dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def _ignored(rel: str, patterns: list[str]) -> bool:
    ignored = False
    for pat in patterns:
        negate = pat.startswith("!")
        p = pat[1:] if negate else pat
        p = p.strip("/")
        candidates = [rel] + [str(parent) for parent in Path(rel).parents if str(parent) != "."]
        hit = any(fnmatch.fnmatch(c, p) or fnmatch.fnmatch(c, p.rstrip("/*")) for c in candidates)
        if p.startswith("**/"):
            hit = hit or any(fnmatch.fnmatch(Path(c).name, p[3:]) for c in candidates)
        if hit:
            ignored = not negate
    return ignored


def test_dockerignore_keeps_heavy_and_private_things_out():
    patterns = _dockerignore_patterns()
    for rel in (".git", ".venv", ".venv-serve", "venv", "runs", "tests", "data", ".pytest_cache",
                "service/__pycache__", "training", "export/exporter/cli.py",
                "models/default.pt"):  # fmt: skip
        assert _ignored(rel, patterns), f".dockerignore should exclude {rel}"
    for rel in ("pyproject.toml", "README.md", "service/app.py", "export/runtime.py",
                "models/default.onnx"):  # fmt: skip
        assert not _ignored(rel, patterns), f".dockerignore must not exclude {rel}"


def test_every_copy_source_is_in_the_build_context(dockerfile):
    patterns = _dockerignore_patterns()
    missing = []
    for stage in dockerfile.stages:
        for instr in stage.of("COPY"):
            sources, _, flags = copy_sources(instr)
            if "from" in flags:
                continue
            for src in sources:
                path = REPO / src
                if _ignored(src.rstrip("/"), patterns):
                    missing.append(f"{src} (excluded by .dockerignore)")
                elif not path.exists():
                    missing.append(src)
    assert not missing, f"docker build would fail, missing from the context: {missing}"


def test_the_image_ships_the_default_model(dockerfile):
    """The final stage copies models/ into /app and DETECTOR_MODEL_PATH names the bundled
    default, which is in the build context (tracked, not excluded by .dockerignore)."""
    final = dockerfile.final
    copies = [copy_sources(i) for i in final.of("COPY") if "from" not in copy_sources(i)[2]]
    assert (["models/"], "models/") in [(c[0], c[1]) for c in copies], copies
    assert _env(final)["DETECTOR_MODEL_PATH"] == "/app/models/default.onnx"
    assert (REPO / "models" / "default.onnx").is_file()
    assert not _ignored("models/default.onnx", _dockerignore_patterns())


# --------------------------------------------------------------------------------------------
# pip resolution without torch (needs the package index)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pip_resolves_the_serving_install_without_torch(tmp_path):
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--disable-pip-version-check", "--report", str(report), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]
    assert "onnxruntime" in {n.lower() for n in names}
    assert not [n for n in names if TORCH_LIKE.match(n)], names
