"""docker/prometheus-rules.yml: `promtool check rules`, every metric and label it uses is in the
metric spec (tests/deploy/helpers.py METRIC_SPEC), and `promtool test rules` unit tests with
series labelled as a model repository labels them (`model`, `route`): job-level rules sum over
models, readiness and failed reloads are alerted per model and name it, API-key guessing is
alerted per instance. (tests/service/test_prometheus.py also unit-tests the alerts with
unlabelled series and loads the rules into a real Prometheus.)"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.helpers import INSTALL_HINT, REPO, venv_bin_tool
from tests.deploy.promql import spec_violations

yaml = pytest.importorskip("yaml", reason=f"PyYAML is not installed: {INSTALL_HINT}")

RULES = REPO / "docker" / "prometheus-rules.yml"
A = 'job="detector", instance="a:8000"'
B = 'job="detector", instance="b:8000"'


@pytest.fixture(scope="module")
def rules() -> list[dict]:
    cfg = yaml.safe_load(RULES.read_text())
    return [r for g in cfg["groups"] for r in g["rules"]]


def _promtool() -> str:
    promtool = venv_bin_tool("promtool")
    if promtool is None:
        pytest.skip(f"promtool is not installed: {INSTALL_HINT}")
    return promtool


def test_promtool_check_rules():
    proc = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rules_use_only_the_spec(rules):
    """Each rule's metrics are the spec's, Prometheus' own (`up`) or a recording rule of this
    file; matchers and by/on clauses use labels those carry."""
    records = frozenset(r["record"] for r in rules if "record" in r)
    bad = []
    for rule in rules:
        where = rule.get("record") or rule["alert"]
        problems, labels_here, grouping = spec_violations(where, rule["expr"], records)
        bad += problems
        # annotations name only labels the alert's series carry
        for text in rule.get("annotations", {}).values():
            for lb in re.findall(r"\$labels\.(\w+)", text):
                if lb not in labels_here | grouping:
                    bad.append(f"{where}: annotation uses $labels.{lb}")
    assert not bad, "\n".join(bad)


def test_per_model_alerts_name_the_model(rules):
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    for name in ("DetectorNotReady", "DetectorModelReloadFailed"):
        assert "$labels.model" in alerts[name]["annotations"]["summary"], name
        # no aggregation that would drop `model`
        assert not re.search(r"\b(sum|max|min|avg|count)\b", alerts[name]["expr"]), name
    refusals = alerts["DetectorApiKeyRefusals"]
    assert 'reason="wrong"' in refusals["expr"]
    assert refusals.get("for") in ("10m", "15m"), "a sustained rate, not one burst"


def _run_promtool_test(tmp_path: Path, tests: list[dict]) -> None:
    path = tmp_path / "rules_test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m",
                                    "tests": tests}))  # fmt: skip
    proc = subprocess.run([_promtool(), "test", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_unit_tests_with_model_labels(tmp_path):
    """Instance a serves `default` (ready) and `birds` (not ready, its reload failed); instance
    b serves both, ready. Requests of several models and routes, some refused before a model
    was resolved (model="")."""

    def req(inst: str, model: str, route: str, outcome: str) -> str:
        labels = f'model="{model}", route="{route}", outcome="{outcome}"'
        return f"detector_requests_total{{{inst}, {labels}}}"

    inputs = [
        {"series": f"up{{{A}}}", "values": "1x40"},
        {"series": f"up{{{B}}}", "values": "1x40"},
        {"series": f'detector_model_ready{{{A}, model="default"}}', "values": "1x40"},
        {"series": f'detector_model_ready{{{A}, model="birds"}}', "values": "0x40"},
        {"series": f'detector_model_ready{{{B}, model="default"}}', "values": "1x40"},
        {"series": f'detector_model_ready{{{B}, model="birds"}}', "values": "0 0 1x38"},
        # 1/s ok (default, detect) + 0.5/s ok (birds, v2) on a; 0.5/s errors (birds, batch) on
        # b; 0.5/s unauthorized before a model was known: server-side ratio 0.5 / 2.5 = 0.2
        {"series": req(A, "default", "detect", "ok"), "values": "0+60x40"},
        {"series": req(A, "birds", "v2", "ok"), "values": "0+30x40"},
        {"series": req(B, "birds", "batch", "error"), "values": "0+30x40"},
        {"series": req(B, "", "detect", "unauthorized"), "values": "0+30x40"},
        {"series": f'detector_model_reloads_total{{{A}, model="birds", result="failed"}}',
         "values": "0 0 1x38"},
        {"series": f'detector_model_reloads_total{{{A}, model="default", result="ok"}}',
         "values": "0 1 2 3x37"},
        {"series": f'detector_model_reloads_total{{{B}, model="birds", result="failed"}}',
         "values": "0x40"},
        # 2 wrong keys/s on a (guessing), 10 missing keys/s on b (unconfigured clients)
        {"series": f'detector_api_key_refusals_total{{{A}, route="detect", reason="wrong"}}',
         "values": "0+60x40"},
        {"series": f'detector_api_key_refusals_total{{{A}, route="v2", reason="wrong"}}',
         "values": "0+60x40"},
        {"series": f'detector_api_key_refusals_total{{{B}, route="detect", reason="missing"}}',
         "values": "0+600x40"},
        {"series": f'detector_api_key_refusals_total{{{B}, route="detect", reason="wrong"}}',
         "values": "0+6x40"},
    ]  # fmt: skip
    tests = [{
        "interval": "1m",
        "input_series": inputs,
        "promql_expr_test": [
            {"expr": "job:detector_requests:rate5m", "eval_time": "10m",
             "exp_samples": [{"labels": 'job:detector_requests:rate5m{job="detector"}',
                              "value": 2.5}]},
            {"expr": "job:detector_request_errors:ratio_rate5m", "eval_time": "10m",
             "exp_samples": [{"labels": 'job:detector_request_errors:ratio_rate5m'
                                        '{job="detector"}', "value": 0.2}]},
            # a: birds not ready -> not counted; b: every model ready (after 2 m)
            {"expr": "job:detector_ready_instances:sum", "eval_time": "10m",
             "exp_samples": [{"labels": 'job:detector_ready_instances:sum{job="detector"}',
                              "value": 1}]},
            {"expr": "job:detector_ready_instances:sum", "eval_time": "1m",
             "exp_samples": [{"labels": 'job:detector_ready_instances:sum{job="detector"}',
                              "value": 0}]},
        ],
        "alert_rule_test": [
            {"eval_time": "4m", "alertname": "DetectorNotReady", "exp_alerts": []},
            {"eval_time": "10m", "alertname": "DetectorNotReady", "exp_alerts": [{
                "exp_labels": {"severity": "critical", "job": "detector", "instance": "a:8000",
                               "model": "birds"},
                "exp_annotations": {
                    "summary": "model birds of detector a:8000 has not been ready for 5 minutes",
                    "description": "see GET /models (its last_error) and the instance's log; "
                                   "the model file is birds.onnx or birds/<version>/model.onnx "
                                   "in DETECTOR_MODEL_DIR (DETECTOR_MODEL_PATH without it)"}}]},
            {"eval_time": "10m", "alertname": "DetectorHighErrorRatio", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "job": "detector"},
                "exp_annotations": {"summary": "20% of detector requests fail server-side"}}]},
            {"eval_time": "10m", "alertname": "DetectorModelReloadFailed", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "job": "detector", "instance": "a:8000",
                               "model": "birds", "result": "failed"},
                "exp_annotations": {"summary": "a model reload of birds on a:8000 was refused; "
                                               "the old model serves"}}]},
            {"eval_time": "30m", "alertname": "DetectorModelReloadFailed", "exp_alerts": []},
            {"eval_time": "8m", "alertname": "DetectorApiKeyRefusals", "exp_alerts": []},
            {"eval_time": "20m", "alertname": "DetectorApiKeyRefusals", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "job": "detector", "instance": "a:8000"},
                "exp_annotations": {
                    "summary": "detector a:8000 refuses 2 wrong API keys per second",
                    "description": "a key-guessing attempt or a client with a revoked key: see "
                                   "the access log's 401s"}}]},
        ],
    }]  # fmt: skip
    _run_promtool_test(tmp_path, tests)
