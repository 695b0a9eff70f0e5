"""A real Prometheus (Debian's, installed by .ci/install-deploy-tools.sh) with the project's
docker/prometheus.yml and docker/prometheus-rules.yml, scraping a live `python -m service`:
the target is up, every query of the Grafana dashboard returns data through Prometheus' HTTP
API, and the rules load and evaluate. Plus `promtool test rules` unit tests of the alerts."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.attacks.images import jpeg
from bench.attacks.server import REPO, run_server
from bench.http_load import free_port
from tests import wait_until
from tests.deploy.helpers import INSTALL_HINT, venv_bin_tool
from tests.deploy.promql import dashboard_queries

pytestmark = pytest.mark.slow
yaml = pytest.importorskip("yaml", reason=f"PyYAML is not installed: {INSTALL_HINT}")
PROM_CONFIG = REPO / "docker" / "prometheus.yml"
RULES = REPO / "docker" / "prometheus-rules.yml"
DASHBOARD = REPO / "docker" / "grafana" / "dashboards" / "detector.json"
GRAFANA_VARS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}


def tool(name: str) -> str:
    path = venv_bin_tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian's prometheus package): {INSTALL_HINT}")
    return path


def concrete(where: str, expr: str) -> str:
    """Grafana's variables -> values ($job, $instance, $stage -> '.*')."""
    import re

    out = re.sub(r"\$\{?(\w+)\}?", lambda m: GRAFANA_VARS.get(m.group(1), ".*"), expr)
    return f"count({out})" if where.startswith("variable") else out


def test_rule_file_is_wired_into_the_config() -> None:
    cfg = yaml.safe_load(PROM_CONFIG.read_text())
    assert [(PROM_CONFIG.parent / p).resolve() for p in cfg["rule_files"]] == [RULES.resolve()]
    compose = (REPO / "docker-compose.yml").read_text()
    assert "./docker/prometheus-rules.yml:/etc/prometheus/prometheus-rules.yml:ro" in compose


def test_promtool_unit_tests_the_alerts(tmp_path: Path) -> None:
    promtool = tool("promtool")
    inst = 'job="detector", instance="a:8000"'
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": f"up{{{inst}}}", "values": "0x20"},
                {"series": f"detector_model_ready{{{inst}}}", "values": "0x20"},
                {"series": f'detector_requests_total{{{inst}, outcome="ok"}}',
                 "values": "0+60x20"},
                {"series": f'detector_requests_total{{{inst}, outcome="overloaded"}}',
                 "values": "0+30x20"},
                {"series": f"detector_queue_depth{{{inst}}}", "values": "9x20"},
                {"series": f"detector_queue_capacity{{{inst}}}", "values": "10x20"},
                {"series": f'detector_model_reloads_total{{{inst}, result="failed"}}',
                 "values": "0 0 1x18"},
            ],
            "promql_expr_test": [
                {"expr": "job:detector_request_errors:ratio_rate5m", "eval_time": "10m",
                 "exp_samples": [{"labels": 'job:detector_request_errors:ratio_rate5m'
                                            '{job="detector"}', "value": 1 / 3}]},
                {"expr": "instance:detector_queue_saturation:ratio", "eval_time": "10m",
                 "exp_samples": [{"labels": f"instance:detector_queue_saturation:ratio{{{inst}}}",
                                  "value": 0.9}]},
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "DetectorDown", "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "job": "detector",
                                   "instance": "a:8000"},
                    "exp_annotations": {"summary": "detector a:8000 cannot be scraped"}}]},
                {"eval_time": "3m", "alertname": "DetectorNotReady", "exp_alerts": []},
                {"eval_time": "10m", "alertname": "DetectorHighErrorRatio", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "job": "detector"},
                    "exp_annotations": {"summary": "33.33% of detector requests fail "
                                                   "server-side"}}]},
                {"eval_time": "10m", "alertname": "DetectorModelReloadFailed", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "job": "detector",
                                   "instance": "a:8000", "result": "failed"},
                    "exp_annotations": {"summary": "a model reload on a:8000 was refused; "
                                                   "the old model serves"}}]},
                {"eval_time": "30m", "alertname": "DetectorModelReloadFailed",
                 "exp_alerts": []},
            ],
        }],
    }  # fmt: skip
    path = tmp_path / "rules_test.yml"
    path.write_text(yaml.safe_dump(test))
    proc = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def prometheus_config(service_port: int, prom_port: int) -> dict[str, Any]:
    """docker/prometheus.yml with its detector job pointed at the live service (1 s scrapes);
    the compose-only DNS job (replicas) is left out."""
    cfg: dict[str, Any] = yaml.safe_load(PROM_CONFIG.read_text())
    cfg["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    detector, prom = jobs["detector"], jobs["prometheus"]
    detector["scrape_interval"] = "1s"
    detector["static_configs"][0]["targets"] = [f"127.0.0.1:{service_port}"]
    prom["static_configs"][0]["targets"] = [f"127.0.0.1:{prom_port}"]
    cfg["scrape_configs"] = [detector, prom]
    cfg["rule_files"] = [str((PROM_CONFIG.parent / p).resolve()) for p in cfg["rule_files"]]
    return cfg


@pytest.fixture
def prometheus_url(tmp_path: Path, tiny_onnx_path: Path) -> Iterator[tuple[str, str]]:
    binary = tool("prometheus")
    with run_server(tmp_path, DETECTOR_MODEL_PATH=str(tiny_onnx_path),
                    DETECTOR_THREADS="1") as srv:  # fmt: skip
        srv.wait_ready()
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(srv.port, port)))
        log = (tmp_path / "prometheus.log").open("wb")
        proc = subprocess.Popen([binary, f"--config.file={config}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"

            def ready() -> bool:
                assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
                try:
                    return httpx.get(url + "/-/ready", timeout=1).status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(ready, 60, 0.2, what="prometheus never became ready")
            yield url, srv.url
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()


def traffic(service: str, stop: threading.Event) -> None:
    """Successes and failures on every detection route until `stop`."""
    image = jpeg(320, 240)
    v2 = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                      "data": [base64.b64encode(image).decode()]}]}  # fmt: skip
    with httpx.Client(base_url=service, timeout=30) as c:
        while not stop.is_set():
            c.post("/detect?score_threshold=0.01", content=image)
            c.post("/detect", content=b"not an image")
            c.post("/detect/batch", files=[("image", ("a", image)), ("image", ("b", image))])
            c.post("/v2/models/fcos-tiny/infer", json=v2)
            time.sleep(0.05)


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(prom + "/api/v1/query", params={"query": expr}, timeout=10)
    assert r.status_code == 200, (expr, r.text)
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(s["value"][1])) for s in result)


def test_real_prometheus_answers_every_dashboard_query(prometheus_url: tuple[str, str]) -> None:
    prom, service = prometheus_url
    queries = [(w, concrete(w, e)) for w, e in
               dashboard_queries(json.loads(DASHBOARD.read_text()))]  # fmt: skip
    cfg = yaml.safe_load(RULES.read_text())
    records = [r["record"] for g in cfg["groups"] for r in g["rules"] if "record" in r]
    stop = threading.Event()
    sender = threading.Thread(target=traffic, args=(service, stop), daemon=True)
    sender.start()
    try:
        deadline = time.monotonic() + 90  # rate() needs two scrapes; rules run every 15 s
        while True:
            targets = httpx.get(prom + "/api/v1/targets", timeout=10).json()["data"]
            health = {t["labels"]["job"]: t["health"] for t in targets["activeTargets"]}
            missing = [(w, e) for w, e in queries if not finite(query(prom, e))]
            missing += [("rule", r) for r in records if not query(prom, r)]
            if health.get("detector") == "up" and not missing:
                break
            assert time.monotonic() < deadline, f"targets {health}; no data for {missing}"
            time.sleep(1)
    finally:
        stop.set()
        sender.join(timeout=60)
    groups = httpx.get(prom + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == len(records) + sum(
        1 for g in cfg["groups"] for r in g["rules"] if "alert" in r)  # fmt: skip
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    up = query(prom, 'up{job="detector"}')
    assert [s["value"][1] for s in up] == ["1"]
    oks = query(prom, 'detector_requests_total{outcome="ok"}')
    assert float(oks[0]["value"][1]) > 0
