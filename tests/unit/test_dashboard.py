"""deploy/grafana/hwledger.json: a valid Grafana dashboard whose every PromQL expression names
only metrics the code registers (read from the real registries of the projector and the query
service, standard collectors included) and only labels those metrics have, and which covers
what operators watch."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import Histogram, MetricWrapperBase

from hwledger.projectors.metrics import Metrics as ProjectorMetrics
from hwledger.query.http_metrics import HttpMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "hwledger.json"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum",
                                                             "_created"),
            "summary": ("", "_count", "_sum", "_created"), "info": ("_info",),
            "gauge": ("",), "unknown": ("",), "stateset": ("",), "gaugehistogram": (
                "_bucket", "_gcount", "_gsum")}
"""The sample names of a metric family by its type (the exposition format's rules)."""
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                   "unless", "offset", "bool", "inf", "nan"}
WATCHED = {"hwledger_projector_lag_messages", "hwledger_projector_events_total",
           "hwledger_projector_dead_letters_total", "hwledger_query_requests_total",
           "hwledger_query_request_seconds_bucket", "hwledger_query_screening_candidates_sum",
           "hwledger_query_screening_placements_sum", "hwledger_query_binpacker_rejections_total",
           "process_cpu_seconds_total", "process_resident_memory_bytes"}
"""What the dashboard must show (issue 17): projector lag, applied and dead-lettered events,
request rate and latency by route, candidates, placements, false positives, process CPU/RSS."""
TARGET_LABELS = {"job", "instance"}
"""Labels Prometheus adds to every scraped sample."""


def registered_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name `registry` exposes or will expose once its labelled children exist."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names (in selectors and `by (...)`) or Grafana variables."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\{?\w+\}?", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    return {m.group() for m in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", expr)
            if m.group().lower() not in PROMQL_KEYWORDS
            and not expr[m.end():].lstrip().startswith("(")}


def metric_labels(*owners: object) -> dict[str, set[str]]:
    """Sample name -> its label names, for the metrics that are attributes of `owners` (the
    label names a metric was declared with are only kept in a private attribute)."""
    found: dict[str, set[str]] = {}
    for metric in (m for o in owners for m in vars(o).values()
                   if isinstance(m, MetricWrapperBase)):
        labels = set(metric._labelnames) | ({"le"} if isinstance(metric, Histogram) else set())
        family = metric._name.removesuffix("_total")
        for suffix in SUFFIXES[str(metric._type)]:
            found[family + suffix] = labels
    return found


def label_names(expr: str) -> set[str]:
    """The label names a PromQL expression matches on or groups by."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    selected = {m.group(1) for selector in re.findall(r"\{([^}]*)\}", expr)
                for m in re.finditer(r"(\w+)\s*(?:=~|!~|!=|=)", selector)}
    grouped = {name.strip() for clause in re.findall(
        r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr) for name in clause.split(",")}
    return (selected | grouped) - {""}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text("utf-8"))
    return loaded


def panels(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in document["panels"]:
        yield panel
        yield from panel.get("panels", ())


def expressions() -> list[str]:
    return [t["expr"] for p in panels(dashboard()) for t in p.get("targets", ())]


def test_metric_names_reads_promql() -> None:
    assert metric_names('sum by (route, le) (rate(a_bucket{exact="true",x=~"5.."}[$__rate_'
                        'interval])) / on (job) group_left b_total offset 5m * 0.99') == {
        "a_bucket", "b_total"}
    assert metric_names("histogram_quantile(0.5, sum(rate(c_seconds_bucket[5m])))") == {
        "c_seconds_bucket"}


@pytest.mark.parametrize("expr", expressions())
def test_every_expression_names_only_registered_metrics(expr: str) -> None:
    registered = (registered_names(ProjectorMetrics().registry)
                  | registered_names(HttpMetrics().registry))
    names = metric_names(expr)
    assert names and names <= registered, names - registered


def test_label_names_reads_selectors_and_groupings() -> None:
    assert label_names('sum by (route, le) (rate(a_bucket{exact="true",x=~"a,b"}[5m])) / on '
                       '(job) b_total{status!="200"}') == {"route", "le", "exact", "x", "job",
                                                           "status"}


@pytest.mark.parametrize("expr", expressions())
def test_every_expression_uses_only_labels_its_metrics_have(expr: str) -> None:
    labels = metric_labels(ProjectorMetrics(), HttpMetrics())
    names = metric_names(expr)
    known = TARGET_LABELS.union(*(labels.get(name, set()) for name in names))
    assert label_names(expr) <= known, label_names(expr) - known


def test_the_dashboard_covers_what_operators_watch() -> None:
    assert set().union(*map(metric_names, expressions())) >= WATCHED


def test_the_dashboard_is_a_valid_grafana_dashboard() -> None:
    document = dashboard()
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", document["uid"]) and document["title"]
    assert isinstance(document["schemaVersion"], int) and document["schemaVersion"] >= 36
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    found = list(panels(document))
    assert [p["id"] for p in found] == sorted({p["id"] for p in found})  # unique, ordered
    for panel in found:
        assert panel["title"] and set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat", "gauge", "table"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"] == {
                "type": "prometheus", "uid": "${datasource}"}
            assert target["refId"] and target["expr"]
    assert sum(p["type"] != "row" for p in found) >= 10
