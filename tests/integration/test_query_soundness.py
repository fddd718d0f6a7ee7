"""Soundness: for random inventories and requests, every provider the bin-packer can place, with
either packing (the search or Akash's greedy rule), is in the prefilter's answer (false
positives are fine, false negatives are bugs). Inventories include unlimited allocatables (-1),
leased IP pools (or no IP operator) with runs holding IPs, and reclamation windows; requests
include LEASED_IP and other endpoints and reclamation windows.

Histories are applied with the projector's `apply_events` (no Kafka, for speed). Examples:
500 by default; set HWLEDGER_SOUNDNESS_EXAMPLES for longer runs.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwledger.query.aggregator import parse_group_spec
from hwledger.query.binpacker import Packing, Placement, place
from hwledger.query.inventory import ProviderNodes
from hwledger.query.placement_run import provider_nodes
from hwledger.query.screening_filter import screening_filter
from hwledger.query.service import QueryService, make_engine
from hwledger.schemas.db import connect
from hwledger.schemas.events import EventData
from hwledger.schemas.units import GiB
from tests.factories import (
    CATALOG_KEYS,
    gpu,
    provider_registered,
    run_finished,
    run_started,
    snapshot,
)
from tests.integration.query_support import fresh_schema

EXAMPLES = int(os.environ.get("HWLEDGER_SOUNDNESS_EXAMPLES", "500"))
KINDS = sorted(CATALOG_KEYS)
CLASSES = ("beta1", "beta2", "ram")
GPU_KEYS = (
    "vendor/nvidia", "vendor/nvidia/model/*", "vendor/amd", "vendor/nvidia/model/h100",
    "vendor/nvidia/model/A100", "vendor/nvidia/model/a100/ram/80Gi",
    "vendor/nvidia/model/a100/ram/40960Mi", "vendor/nvidia/model/h100/interface/sxm5",
    "vendor/nvidia/model/a100/interface/pcie", "vendor/amd/model/mi300x/ram/192Gi",
    "vendor/nvidia/model/t4", "vendor/nvidia/model/rtx4090",
)


@st.composite
def node_events(draw: st.DrawFn, provider: str, name: str) -> list[EventData]:
    kinds = draw(st.lists(st.sampled_from(KINDS), max_size=4))
    volumes = draw(st.lists(st.tuples(st.sampled_from(CLASSES), st.sampled_from((0, 1, 2))),
                            max_size=2))
    snap = snapshot(provider, name, gpus=[gpu(i, k) for i, k in enumerate(kinds)],
                    minutes=draw(st.integers(0, 5)),
                    allocatable={"cpu_millicores": draw(st.sampled_from((1000, 2000, 4000, -1))),
                                 "memory_bytes": draw(st.sampled_from((GiB, 2 * GiB, 4 * GiB,
                                                                       -1))),
                                 "ephemeral_storage_bytes": draw(st.sampled_from(
                                     (GiB, 2 * GiB, -1)))},
                    storage=[{"class": c, "bytes": b * GiB} for c, b in volumes])
    events: list[EventData] = [("HardwareSnapshotted", snap)]
    for index in range(draw(st.integers(0, 2))):
        slots = draw(st.lists(st.sampled_from(range(len(kinds))), unique=True)) if kinds else []
        run = run_started(snap, f"{provider}-{name}-run{index}", minutes=6 + index,
                          resources={"cpu_millicores": draw(st.sampled_from((0, 500, 1500))),
                                     "memory_bytes": draw(st.sampled_from((0, GiB))),
                                     "ephemeral_storage_bytes": draw(st.sampled_from((0, GiB))),
                                     "gpu_slots": slots},
                          leased_ips=draw(st.integers(0, 2)))
        events.append(("RunStarted", run))
        if draw(st.booleans()):
            events.append(("RunFinished", run_finished(run, minutes=8 + index)))
    return events


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[str], list[EventData]]:
    tag = uuid.uuid4().hex[:8]
    providers = [f"sound-{tag}-{p}" for p in range(draw(st.integers(1, 3)))]
    events: list[EventData] = []
    for provider in providers:
        if draw(st.booleans()):
            events.append(("ProviderRegistered", provider_registered(
                provider, leased_ip_capacity=draw(st.one_of(st.none(), st.integers(0, 3))),
                reclamation_window=draw(st.sampled_from((None, 1800, 3600, 7200))))))
        for n in range(draw(st.integers(1, 3))):
            events.extend(draw(node_events(provider, f"node-{n}")))
    return providers, events


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    units = []
    for _ in range(draw(st.integers(1, 2))):
        storage = []
        for _ in range(draw(st.integers(0, 2))):
            kind = draw(st.sampled_from(("ephemeral", "ram", "beta1", "beta2")))
            attributes = ([] if kind == "ephemeral" else
                          [{"key": "class", "value": "ram"}] if kind == "ram" else
                          [{"key": "persistent", "value": "true"},
                           {"key": "class", "value": kind}])
            storage.append({"name": kind, "quantity": {"val": str(draw(st.sampled_from(
                (0, GiB // 2, GiB))))}, "attributes": attributes})
        gpu_units = draw(st.integers(0, 4))
        resource: dict[str, Any] = {
            "cpu": {"units": {"val": str(draw(st.sampled_from((0, 500, 1000, 2000))))}},
            "memory": {"quantity": {"val": str(draw(st.sampled_from((0, GiB // 2, GiB))))}},
            "storage": storage,
            "gpu": {"units": {"val": str(gpu_units)}, "attributes": [
                {"key": k, "value": "true"}
                for k in draw(st.lists(st.sampled_from(GPU_KEYS), max_size=2, unique=True))]},
        }
        resource["endpoints"] = [
            {"kind": kind, "sequenceNumber": number} for kind, number in draw(st.lists(
                st.tuples(st.sampled_from(("LEASED_IP", "SHARED_HTTP", "RANDOM_PORT")),
                          st.integers(0, 3)), max_size=3))]
        units.append({"resource": resource, "count": draw(st.integers(1, 3))})
    document = {"name": "soundness", "resources": units}
    window = draw(st.sampled_from((None, 1800, 3600, 7200)))
    return document if window is None else {**document, "reclamationWindow": window}


@pytest.fixture(scope="module")
def sound(database_url: str) -> Iterator[tuple[str, QueryService]]:
    """A schema and one pooled service on it (no online TTL: the bin-packer has none)."""
    with fresh_schema(database_url) as schema:
        service = QueryService(make_engine(database_url, pool_size=1),
                               online_ttl_seconds=10**9, schema=schema)
        yield schema, service
        asyncio.run(service.close())


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@pytest.mark.slow
@given(history=histories(), request=requests())
def test_prefilter_never_drops_a_placeable_provider(
        database_url: str, sound: tuple[str, QueryService],
        history: tuple[list[str], list[EventData]], request: dict[str, Any]) -> None:
    from hwledger.projectors import apply_events

    schema, service = sound
    providers, events = history
    with connect(database_url, schema) as conn:
        apply_events(conn, events)
        conn.commit()
    group = parse_group_spec(request)
    answer = asyncio.run(service.screen(screening_filter(group), limit=10_000))
    candidates = {p["owner"] for p in answer.providers()}
    with service.repeatable_read() as (conn, schema):
        inventories = provider_nodes(conn, providers, schema)
    for provider, packing in itertools.product(providers, Packing):
        outcome = place(group, inventories.get(provider, ProviderNodes(provider, ())),
                        packing=packing)
        if isinstance(outcome, Placement):
            assert provider in candidates, (provider, packing, request, inventories.get(provider))
