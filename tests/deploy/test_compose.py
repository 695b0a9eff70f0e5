"""docker-compose.yml (+ profile `scale`), docker/prometheus.yml, Grafana provisioning and
docker/nginx.conf: validated by the real tools where they are installed (`docker compose
config`, `promtool check config`, `nginx -t`), plus the cross-file wiring."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from tests.deploy.helpers import (
    COMPOSE_FILE,
    INSTALL_HINT,
    REPO,
    compose_command,
    parse_dockerfile,
    substitute,
    venv_bin_tool,
)

yaml = pytest.importorskip("yaml", reason=f"PyYAML is not installed: {INSTALL_HINT}")

PROM_CONFIG = REPO / "docker" / "prometheus.yml"
NGINX_CONF = REPO / "docker" / "nginx.conf"
GRAFANA = REPO / "docker" / "grafana"
SCALE_SERVICE = "detector-replica"
MODELS_TARGET = "/app/models"  # the model repository inside the container (DETECTOR_MODEL_DIR)


@pytest.fixture(scope="module")
def compose_raw() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose_cli() -> list[str]:
    cmd = compose_command()
    if cmd is None:
        pytest.skip(f"no Docker Compose v2 CLI (v1 is not supported): {INSTALL_HINT}")
    return cmd


def _config(cli: list[str], home, *profiles: str) -> dict:
    argv = [*cli, "-f", str(COMPOSE_FILE)]
    for p in profiles:
        argv += ["--profile", p]
    argv.append("config")
    # A clean environment: defaults come from the file, not from whoever runs the tests.
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home)}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert proc.returncode == 0, f"{shlex.join(argv)} failed:\n{proc.stderr}"
    assert "WARN" not in proc.stderr, proc.stderr
    return yaml.safe_load(proc.stdout)


# --------------------------------------------------------------------------------------------
# docker compose config (the real parser and schema)
# --------------------------------------------------------------------------------------------


def test_compose_config_validates(compose_cli, tmp_path):
    cfg = _config(compose_cli, tmp_path)
    assert set(cfg["services"]) == {"detector", "prometheus", "grafana"}
    det = cfg["services"]["detector"]
    assert det["build"]["dockerfile"] in ("docker/Dockerfile", str(REPO / "docker/Dockerfile"))
    ports = det["ports"]
    assert any(str(p.get("target")) == "8000" and str(p.get("published")) == "8000"
               if isinstance(p, dict) else p.endswith(":8000") for p in ports), ports  # fmt: skip
    assert det["environment"]["DETECTOR_PORT"] == "8000"
    assert det["healthcheck"]["test"][0] == "CMD"
    _assert_serves_the_models_folder(det, REPO / "models")


def _models_mount(service: dict) -> dict:
    (mount,) = [v for v in service.get("volumes", []) if v["target"] == MODELS_TARGET]
    return mount


def _assert_serves_the_models_folder(service: dict, host_dir) -> None:
    """The host folder is bind-mounted read-only at /app/models, served as the repository."""
    mount = _models_mount(service)
    assert mount["type"] == "bind" and mount["read_only"] is True, mount
    assert mount["source"] == str(host_dir), mount
    env = service["environment"]
    assert env["DETECTOR_MODEL_DIR"] == MODELS_TARGET
    assert "DETECTOR_MODEL_PATH" not in env, "DETECTOR_MODEL_DIR serves the folder"
    # passed on only when set (an empty DETECTOR_DEFAULT_MODEL would be refused)
    assert env["DETECTOR_DEFAULT_MODEL"] is None
    assert int(env["DETECTOR_MAX_MODELS"]) >= 1
    # still a read-only root with a tmpfs /tmp, no capabilities
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert "/tmp" in service["tmpfs"]


def test_compose_models_folder_is_overridable(compose_cli, tmp_path):
    models = tmp_path / "my-models"
    models.mkdir()
    argv = [*compose_cli, "-f", str(COMPOSE_FILE), "--profile", "scale", "config"]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path),
           "DETECTOR_MODELS_HOST_DIR": str(models), "DETECTOR_DEFAULT_MODEL": "birds"}  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    for name in ("detector", SCALE_SERVICE):
        service = cfg["services"][name]
        assert _models_mount(service)["source"] == str(models), name
        assert service["environment"]["DETECTOR_DEFAULT_MODEL"] == "birds", name


def test_compose_config_validates_with_profile_scale(compose_cli, tmp_path):
    cfg = _config(compose_cli, tmp_path, "scale")
    assert {"detector", "prometheus", "grafana", SCALE_SERVICE, "lb"} <= set(cfg["services"])
    replica = cfg["services"][SCALE_SERVICE]
    assert int(replica["deploy"]["replicas"]) >= 2
    assert not replica.get("ports"), "replicas publish no host port (they would collide)"
    _assert_serves_the_models_folder(replica, REPO / "models")
    lb = cfg["services"]["lb"]
    assert any(str(p.get("target")) == "80" for p in lb["ports"])


# --------------------------------------------------------------------------------------------
# wiring (static)
# --------------------------------------------------------------------------------------------


def _healthcheck_code(test: list[str]) -> str:
    assert test[:3] == ["CMD", "python", "-c"], test
    return test[3]


def test_compose_healthcheck_is_the_dockerfile_one(compose_raw):
    (hc,) = parse_dockerfile().final.of("HEALTHCHECK")
    m = re.search(r'CMD python -c "(.*)"\s*$', hc.args)
    assert m, hc.args
    for name in ("detector", SCALE_SERVICE):
        assert _healthcheck_code(compose_raw["services"][name]["healthcheck"]["test"]) == m.group(1)


def test_compose_mounts_exist(compose_raw):
    for name, svc in compose_raw["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0] if isinstance(vol, str) else vol["source"]
            src = substitute(src, {})  # ${VAR:-default} -> its default
            if src.startswith("."):
                assert (REPO / src).exists(), f"{name}: {src} does not exist"
        build = svc.get("build")
        if build:
            assert (REPO / build["context"] / build["dockerfile"]).is_file()
    # the default models folder holds the bundled model, served as `default`
    mount = next(v for v in compose_raw["services"]["detector"]["volumes"]
                 if isinstance(v, dict) and v["target"] == MODELS_TARGET)  # fmt: skip
    assert (REPO / substitute(mount["source"], {}) / "default.onnx").is_file()


def test_compose_header_says_how_to_add_a_model():
    header = COMPOSE_FILE.read_text().split("\nname:", 1)[0]
    assert "DETECTOR_MODELS_HOST_DIR" in header
    assert "docker compose kill -s HUP detector" in header
    assert re.search(r"cp \S+\.onnx", header), "how to copy a model in"


def test_compose_scale_profile(compose_raw):
    services = compose_raw["services"]
    assert services[SCALE_SERVICE]["profiles"] == ["scale"]
    assert services["lb"]["profiles"] == ["scale"]
    assert services["lb"]["image"].startswith("nginx:")
    for name in ("detector", "prometheus", "grafana"):
        assert "profiles" not in services[name], f"{name} runs without a profile"


def _nginx_version(image: str) -> tuple[int, ...]:
    tag = image.split(":", 1)[1]
    return tuple(int(x) for x in re.match(r"(\d+(?:\.\d+)*)", tag).group(1).split("."))


def test_nginx_conf(compose_raw):
    conf = NGINX_CONF.read_text()
    body = re.sub(r"#[^\n]*", "", conf)
    assert re.search(r"resolver\s+127\.0\.0\.11\b", body), "Docker's embedded DNS"
    m = re.search(r"upstream\s+(\w+)\s*\{([^}]*)\}", body)
    assert m, "an upstream block"
    name, upstream = m.groups()
    assert re.search(r"^\s*least_conn;", upstream, re.M)
    assert re.search(r"^\s*zone\s+\w+\s+\d+[kKmM];", upstream, re.M), "`resolve` needs a zone"
    (server,) = re.findall(rf"^\s*server\s+{SCALE_SERVICE}:8000\b([^;]*);", upstream, re.M)
    assert "resolve" in server.split(), "re-resolve the service name as replicas come and go"
    assert re.search(rf"proxy_pass\s+http://{name};", body)
    # `resolve` on an upstream server is open-source nginx from 1.27.3 on
    assert _nginx_version(compose_raw["services"]["lb"]["image"]) >= (1, 27, 3)
    # nginx must not reject uploads the service would accept
    limit = re.search(r"client_max_body_size\s+(\d+)([kKmM]?);", body)
    factor = {"": 1, "k": 1024, "m": 1024 * 1024}[limit.group(2).lower()]
    from service.json_input import json_batch_limit
    from service.settings import Settings

    fields = Settings.model_fields
    largest = json_batch_limit(fields["max_batch_bytes"].default,
                               fields["max_batch_images"].default)  # fmt: skip
    assert largest >= fields["max_upload_bytes"].default
    assert int(limit.group(1)) * factor >= largest
    assert braces_balance(conf)


def braces_balance(text: str) -> bool:
    depth = 0
    for ch in re.sub(r"#[^\n]*|\"[^\"]*\"|'[^']*'", "", text):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def test_nginx_t():
    nginx = venv_bin_tool("nginx")
    if nginx is None:
        pytest.skip("nginx is not installed (the compose `lb` service runs nginx:1.28-alpine)")
    out = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr
    version = tuple(int(x) for x in re.search(r"nginx/(\d+\.\d+\.\d+)", out).group(1).split("."))
    if version < (1, 27, 3):
        pytest.skip(f"nginx {version} is older than 1.27.3 (no `resolve` on upstream servers)")
    proc = subprocess.run([nginx, "-t", "-c", str(NGINX_CONF)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prom() -> dict:
    return yaml.safe_load(PROM_CONFIG.read_text())


def test_promtool_check_config():
    promtool = venv_bin_tool("promtool")
    if promtool is None:
        pytest.skip(f"promtool is not installed: {INSTALL_HINT}")
    proc = subprocess.run([promtool, "check", "config", str(PROM_CONFIG)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _interval_s(text: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m)", text)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def test_prometheus_scrapes_the_detector_and_every_replica(prom, compose_raw):
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    default = prom.get("global", {}).get("scrape_interval", "1m")
    single = [j for j in jobs.values()
              if any("detector:8000" in t for sc in j.get("static_configs", [])
                     for t in sc["targets"])]  # fmt: skip
    assert single, "a job scraping detector:8000"
    replicas = [j for j in jobs.values() for sd in j.get("dns_sd_configs", [])
                if sd.get("type") == "A" and SCALE_SERVICE in sd["names"]]  # fmt: skip
    assert replicas, f"a dns_sd_configs type A job on {SCALE_SERVICE}"
    assert replicas[0]["dns_sd_configs"][0]["port"] == 8000
    for job in (*single, *replicas):
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert _interval_s(job.get("scrape_interval", default)) == 5
    # the compose service mounts this very file as its config
    prom_svc = compose_raw["services"]["prometheus"]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in prom_svc["volumes"]}
    target = mounted["./docker/prometheus.yml"]
    assert f"--config.file={target}" in prom_svc["command"]


# --------------------------------------------------------------------------------------------
# Grafana provisioning
# --------------------------------------------------------------------------------------------


def test_grafana_provisioning(compose_raw):
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"  # the compose service and its port
    assert "prometheus" in compose_raw["services"]
    dash = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yml").read_text())
    (provider,) = dash["providers"]
    assert provider["type"] == "file"
    graf = compose_raw["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in graf["volumes"]}
    assert mounts["./docker/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./docker/grafana/dashboards"] == provider["options"]["path"]
    assert (GRAFANA / "dashboards" / "detector.json").is_file()
