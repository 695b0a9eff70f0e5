"""The Grafana dashboard only queries metrics (and labels) that the service exports: metric
names are extracted from every PromQL expression in docker/grafana/dashboards/detector.json and
checked against the metric spec (tests/deploy/helpers.py METRIC_SPEC: the model-repository
metrics, per-model series labelled `model`) and against the live /metrics of the real app.
Every per-model series is filtered by the `$model` variable; process-wide ones are not."""

from __future__ import annotations

import io
import json
import re
import subprocess

import pytest

from tests import wait_until
from tests.deploy.helpers import DASHBOARD, INSTALL_HINT, REPO, venv_bin_tool
from tests.deploy.promql import (
    HISTOGRAM_SUFFIXES,
    METRIC_SPEC,
    PER_MODEL_METRICS,
    PROMETHEUS_SYNTHETIC,
    TARGET_LABELS,
    dashboard_queries,
    parse_promql,
    spec_violations,
)


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def queries(dashboard) -> list[tuple[str, str]]:
    found = dashboard_queries(dashboard)
    assert len(found) >= 10, found
    return found


# --------------------------------------------------------------------------------------------
# the extractor itself
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "metrics", "grouping"),
    [
        ('sum(rate(a_total{x="1", y=~"$v"}[$__rate_interval]))', {"a_total": {"x", "y"}}, set()),
        ("histogram_quantile(0.95, sum by (le, stage) (rate(h_bucket{stage=~\"a|b\"}[5m])))",
         {"h_bucket": {"stage"}}, {"le", "stage"}),
        ("sum without (instance) (g) / on (job) group_left(name) info_metric offset 5m",
         {"g": set(), "info_metric": set()}, {"instance", "job", "name"}),
        ('max by (instance) (m{n="by (x)", o!~"}"}) > bool 1e-9 and count(z)',
         {"m": {"n", "o"}, "z": set()}, {"instance"}),
        ("rate(c_total[1h:5m]) * 100", {"c_total": set()}, set()),
    ],
)  # fmt: skip
def test_promql_extractor(expr, metrics, grouping):
    selectors, groups = parse_promql(expr)
    got: dict[str, set[str]] = {}
    for s in selectors:
        got.setdefault(s.metric, set()).update(s.labels)
    assert got == metrics
    assert groups == grouping


def test_promql_extractor_keeps_the_matchers():
    expr = (
        'label_replace(sum by (model) (rate(r_total{model=~"$model", x!="a}b", '
        'y=\'q\'}[5m])), "model", "(none)", "model", "") / z{w=""}'
    )
    selectors, groups = parse_promql(expr)
    assert [(s.metric, s.matchers) for s in selectors] == [
        ("r_total", [("model", "=~", "$model"), ("x", "!=", "a}b"), ("y", "=", "q")]),
        ("z", [("w", "=", "")]),
    ]
    assert groups == {"model"}


# --------------------------------------------------------------------------------------------
# static dashboard checks
# --------------------------------------------------------------------------------------------


def test_dashboard_covers_the_required_views(dashboard, queries):
    exprs = "\n".join(q for _, q in queries)
    titles = " | ".join(p.get("title", "") for p in dashboard["panels"])
    assert "rate(detector_requests_total" in exprs
    assert "sum by (outcome)" in exprs and 'outcome!="ok"' in exprs  # errors by outcome
    per_stage = "sum by (le, stage) (rate(detector_stage_duration_seconds_bucket"
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, {per_stage}" in exprs, q
    for name in ("detector_in_flight_requests", "detector_queue_depth", "detector_model_info"):
        assert name in exprs, name
    for word in ("Request", "Errors", "Latency", "In-flight", "Queue", "model"):
        assert word.lower() in titles.lower(), word
    # per-model views: traffic, errors and latency by model, the models' table, API keys
    assert "sum by (model) (rate(detector_requests_total" in exprs
    for q in ("0.5", "0.99"):
        assert (f"histogram_quantile({q}, sum by (le, model) "
                "(rate(detector_stage_duration_seconds_bucket") in exprs, q  # fmt: skip
    assert "sum by (route) (rate(detector_requests_total" in exprs
    assert "sum by (route, reason) (rate(detector_api_key_refusals_total" in exprs
    for name in ("detector_model_memory_bytes", "detector_model_reloads_total",
                 "detector_tiles_total"):  # fmt: skip
        assert name in exprs, name
    (table,) = [p for p in dashboard["panels"] if p["type"] == "table"]
    table_exprs = " ".join(t["expr"] for t in table["targets"])
    for name in ("detector_model_info", "detector_model_ready", "detector_model_memory_bytes"):
        assert name in table_exprs, name
    assert all("by (instance, model" in t["expr"] for t in table["targets"]), table["targets"]
    for word in ("by model", "API-key refusals", "Model memory", "Model reloads"):
        assert word.lower() in titles.lower(), word


def test_dashboard_datasource_is_the_provisioned_one(dashboard):
    yaml = pytest.importorskip("yaml")
    prov = yaml.safe_load(
        (REPO / "docker/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uid = prov["datasources"][0]["uid"]

    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))

    for p in walk(dashboard["panels"]):
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == uid, p["title"]
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == uid, p["title"]
    ids = [p["id"] for p in walk(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert dashboard["uid"] and dashboard["title"]


def test_dashboard_variables_are_defined(dashboard, queries):
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    used = set()
    for _, q in queries:
        used |= set(re.findall(r"\$(\w+)", q)) - {"__rate_interval", "__interval", "__range"}
    for p in dashboard["panels"]:
        if p.get("repeat"):
            used.add(p["repeat"])
    assert used <= defined, used - defined


def test_model_variable(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    model = variables["model"]
    assert model["type"] == "query"
    query = model["query"]["query"] if isinstance(model["query"], dict) else model["query"]
    m = re.fullmatch(r"label_values\((detector_model_ready(?:\{[^}]*\})?), model\)", query)
    assert m, query
    assert model.get("definition", query) == query
    assert model["multi"] is True and model["includeAll"] is True
    # All = any model, the empty one too (requests refused before a model was resolved)
    assert model["allValue"] == ".*"
    assert model["datasource"] == variables["instance"]["datasource"]
    names = list(variables)
    assert names.index("job") < names.index("instance") < names.index("model")


def test_every_dashboard_metric_and_label_is_in_the_spec(queries):
    """Static: each expression's metrics are the spec's (or Prometheus' own per target), its
    matchers use labels those metrics carry, and its by/on clauses group by labels that exist."""
    bad = [problem for where, expr in queries for problem in spec_violations(where, expr)[0]]
    assert not bad, "not in the metric spec:\n" + "\n".join(bad)


def test_per_model_series_follow_the_model_variable(queries):
    """Every per-model selector of a panel is filtered by `model=~"$model"`, every selector by
    job and instance; process-wide metrics (queue, in-flight, request size, API-key refusals)
    have no `model` label to filter on."""
    bad = []
    for where, expr in queries:
        if where.startswith("variable"):
            continue
        for sel in parse_promql(expr)[0]:
            matchers = {(label, op, value) for label, op, value in sel.matchers}
            for label in ("job", "instance"):
                if (label, "=~", f"${label}") not in matchers:
                    bad.append(f"{where}: {sel.metric} not filtered by ${label}")
            if sel.metric in PER_MODEL_METRICS:
                if ("model", "=~", "$model") not in matchers:
                    bad.append(f"{where}: {sel.metric} not filtered by $model")
            elif "model" in sel.labels:
                bad.append(f"{where}: {sel.metric} has no model label")
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------------------------------------
# against the live /metrics of the real app
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tiny_onnx_path) -> dict[str, set[str]]:
    """{sample name: label names} from the app's /metrics after it served a few requests
    (one ok, some errors), so that labelled series exist. Histogram/counter sample suffixes
    are expanded from the families' TYPE lines too."""
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient
    from PIL import Image
    from prometheus_client.parser import text_string_to_metric_families

    from service.app import create_app
    from service.settings import Settings

    settings = Settings(model_path=tiny_onnx_path, threads=1)
    buf = io.BytesIO()
    Image.new("RGB", (96, 64), (120, 80, 40)).save(buf, format="PNG")
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/health/ready").status_code == 200, 60, 0.1,
                   what="app never became ready")  # fmt: skip
        ok = client.post("/detect", files={"image": ("x.png", buf.getvalue(), "image/png")})
        assert ok.status_code == 200, ok.text
        client.post("/detect", content=b"not an image", headers={"content-type": "text/plain"})
        client.post("/detect", content=b"", headers={"content-type": "image/png"})
        text = client.get("/metrics").text

    names: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(text):
        family_names = {fam.name}
        if fam.type == "counter":
            family_names.add(fam.name + "_total")
        if fam.type == "histogram":
            family_names |= {fam.name + s for s in HISTOGRAM_SUFFIXES}
        labels: set[str] = set()
        for sample in fam.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
            labels |= set(sample.labels) - {"le"}
        for n in family_names:
            names.setdefault(n, set()).update(labels)
            if n.endswith("_bucket"):
                names[n].add("le")
    return names


def test_every_dashboard_metric_is_exported_by_the_service(queries, exported):
    missing = []
    used: set[str] = set()
    for where, expr in queries:
        selectors, _ = parse_promql(expr)
        assert selectors, f"{where}: no metric found in {expr!r}"
        for sel in selectors:
            used.add(sel.metric)
            if sel.metric not in exported and sel.metric not in PROMETHEUS_SYNTHETIC:
                missing.append(f"{where}: {sel.metric}")
    assert not missing, "dashboard queries metrics the service does not export:\n" + "\n".join(
        missing
    )
    service_metrics = {m for m in used if m not in PROMETHEUS_SYNTHETIC}
    assert all(m.startswith("detector_") for m in service_metrics), service_metrics
    # the core series are all on the dashboard
    for name in ("detector_requests_total", "detector_stage_duration_seconds_bucket",
                 "detector_in_flight_requests", "detector_queue_depth", "detector_model_info",
                 "detector_model_ready"):  # fmt: skip
        assert name in used, name


def test_the_service_exports_the_metric_spec(exported):
    """The spec the static checks use is what the app exports: every series with its labels."""
    wrong = {
        name: (sorted(exported.get(name, {"(not exported)"})), sorted(labels))
        for name, labels in METRIC_SPEC.items()
        if exported.get(name) != labels
    }
    assert not wrong, f"exported vs spec labels: {wrong}"


def test_every_dashboard_label_exists_on_its_metric(queries, exported):
    bad = []
    for where, expr in queries:
        selectors, grouping = parse_promql(expr)
        labels_here: set[str] = set()
        for sel in selectors:
            if sel.metric in PROMETHEUS_SYNTHETIC:
                continue
            known = exported.get(sel.metric, set()) | TARGET_LABELS
            labels_here |= known
            bad += [f"{where}: {sel.metric}{{{lb}}}" for lb in sel.labels - known]
        if labels_here:
            bad += [f"{where}: by/on ({lb})" for lb in grouping - labels_here]
    assert not bad, "labels the service does not export:\n" + "\n".join(bad)


def test_dashboard_promql_is_valid_for_prometheus(queries, tmp_path):
    """Every expression parses in Prometheus' own PromQL parser (`promtool check rules` on a
    rule file made of them), with Grafana's variables replaced by typical values."""
    yaml = pytest.importorskip("yaml")
    promtool = venv_bin_tool("promtool")
    if promtool is None:
        pytest.skip(f"promtool is not installed: {INSTALL_HINT}")
    grafana_vars = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
    rules = []
    for i, (where, expr) in enumerate(queries):
        concrete = re.sub(r"\$\{?(\w+)\}?", lambda m: grafana_vars.get(m.group(1), ".*"), expr)
        if where.startswith("variable"):  # label_values(selector, label) -> the selector
            concrete = f"count({concrete})"
        rules.append({"record": f"dashboard:query_{i}", "expr": concrete})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
