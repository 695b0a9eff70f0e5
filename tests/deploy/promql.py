"""PromQL as the dashboard and rule tests read it: a small parser (metric selectors, their
label matchers, by/on groupings), the dashboard's queries, and the metric spec the service
exports (names and labels), with one check of an expression against it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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
