"""Prometheus conventions without a database: the `route` label is the route template (one
fixed label for unmatched paths), both services' registries carry the standard process and
platform collectors, every hwledger metric is named by the Prometheus rules, and the
multiprocess bookkeeping of `serve --workers` forgets dead workers and cleans up."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from hwledger.projectors.metrics import Metrics as ProjectorMetrics
from hwledger.query.api import create_app
from hwledger.query.http_metrics import UNMATCHED_ROUTE, HttpMetrics
from hwledger.query.service import QueryService, make_engine
from hwledger.schemas.prometheus import MULTIPROC_ENV, live_workers, multiprocess_directory

NOWHERE = "postgresql://nobody@127.0.0.1:1/none"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(QueryService(make_engine(NOWHERE), schema="hwledger"))) as found:
        yield found


def routes(client: TestClient) -> set[str]:
    text = client.get("/metrics").text
    return {s.labels["route"] for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "hwledger_query_requests_total"}


@pytest.mark.parametrize(("method", "path", "route"), [
    ("GET", "/v1/providers/akash1xyz/runs/run-42", "/v1/providers/{owner}/runs/{run_id}"),
    ("GET", "/v1/providers/akash1xyz", "/v1/providers/{owner}"),
    ("GET", "/v1/hardware/abc123", "/v1/hardware/{system_hardware_id}"),
    ("DELETE", "/v1/gpus", "/v1/gpus"),
    ("GET", "/console/console.js", "/console/{path}"),
    ("POST", "/v1/bid-screening", "/v1/bid-screening"),
    ("GET", "/v1/prefilter", "/v1/prefilter"),
    ("GET", "/v1/no/such/route/7", UNMATCHED_ROUTE),
    ("GET", "/v1/providers/", UNMATCHED_ROUTE),
])
def test_the_route_label_is_the_template_and_unmatched_paths_share_one(
        client: TestClient, method: str, path: str, route: str) -> None:
    client.request(method, path, follow_redirects=False)
    found = routes(client)
    assert route in found
    assert all(label == UNMATCHED_ROUTE or label.startswith("/") for label in found), found
    assert not any(re.search(r"akash1xyz|run-42|abc123|/7$", label) for label in found), found


def sample_names(registry: CollectorRegistry) -> set[str]:
    return {s.name for family in registry.collect() for s in family.samples}


@pytest.mark.parametrize("registry", [ProjectorMetrics().registry, HttpMetrics().registry],
                         ids=["projector", "query"])
def test_both_registries_carry_the_process_and_platform_collectors(
        registry: CollectorRegistry) -> None:
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info",
            "python_gc_collections_total"} <= sample_names(registry)


@pytest.mark.parametrize("registry", [ProjectorMetrics().registry, HttpMetrics().registry],
                         ids=["projector", "query"])
def test_hwledger_metrics_follow_the_prometheus_naming_rules(
        registry: CollectorRegistry) -> None:
    ours = [f for f in registry.collect() if f.name.startswith("hwledger_")]
    assert ours
    for family in ours:
        assert re.fullmatch(r"hwledger_(projector|query)_[a-z]+(_[a-z]+)*", family.name)
        assert not re.search(r"_(ms|milliseconds|minutes|kb|mb|percent|count|sum|total)$",
                             family.name), family.name  # base units; suffixes are the type's
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_live_workers_are_those_still_running_and_dead_ones_are_forgotten(
        tmp_path: Path) -> None:
    gone = dead_pid()
    for pid in (os.getpid(), gone):
        (tmp_path / f"gauge_livesum_{pid}.db").touch()
    (tmp_path / f"counter_{gone}.db").touch()
    assert live_workers(str(tmp_path)) == [os.getpid()]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{gone}.db", f"gauge_livesum_{os.getpid()}.db"])


def test_each_start_gets_its_own_multiprocess_directory_removed_afterwards(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    with multiprocess_directory() as path:
        assert os.environ[MULTIPROC_ENV] == str(path) != str(tmp_path)
        (path / "counter_1.db").touch()
    assert not path.exists() and os.environ[MULTIPROC_ENV] == str(tmp_path)
