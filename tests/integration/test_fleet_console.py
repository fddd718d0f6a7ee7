"""`/v1/gpus` and `/v1/providers` over a synthetic fleet history: the GPU counts equal a count
in Python from the normalized tables (`deploy.bench.gpus.naive_gpu_availability`: current snapshots'
GPU links, unfinished runs' slots, providers' last sighting), offline providers left out, with
each filter."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from hwledger.deploy.bench.fleet import history
from hwledger.deploy.bench.gpus import naive_gpu_availability
from hwledger.projectors import apply_events
from hwledger.query import read_models
from hwledger.query.fleet import FleetFilter, iso
from hwledger.schemas.db import connect
from tests.factories import provider_audited
from tests.integration.query_support import client, fresh_schema

TTL_SECONDS = 600
AUDITOR = "akash1fleetauditor"


@pytest.fixture(scope="module")
def fleet_schema(database_url: str) -> Iterator[str]:
    with fresh_schema(database_url) as schema:
        with connect(database_url, schema) as conn:
            audits = [("ProviderAudited", provider_audited(f"provider-{p:04d}", AUDITOR))
                      for p in range(0, 24, 2)]
            apply_events(conn, [*history(7, 24, 900, conflicting=True), *audits])
            conn.commit()
        yield schema


def counted(database_url: str, schema: str, now: datetime, **wanted: str) -> dict[str, Any]:
    """The `/v1/gpus` figures counted from the normalized tables, not the views."""
    with connect(database_url, schema) as conn:
        return naive_gpu_availability(conn, now - timedelta(seconds=TTL_SECONDS),
                                      FleetFilter(**wanted))


def service_clock(database_url: str, schema: str) -> datetime:
    """A clock at which about half the providers are offline (seen over the TTL ago)."""
    with connect(database_url, schema) as conn:
        seen: list[datetime] = sorted(
            at for (at,) in conn.execute("SELECT last_seen_at FROM provider_inventory"))
    return seen[len(seen) // 2] + timedelta(seconds=TTL_SECONDS)


def test_gpu_counts_equal_the_normalized_tables_offline_providers_excluded(
        database_url: str, fleet_schema: str) -> None:
    now = service_clock(database_url, fleet_schema)
    with client(database_url, fleet_schema, now, online_ttl_seconds=TTL_SECONDS) as http:
        answer = http.get("/v1/gpus").json()
        everyone = http.get("/v1/providers?limit=1000").json()
        read_models.Gpus.model_validate(answer)
        read_models.Providers.model_validate(everyone)
    expected = counted(database_url, fleet_schema, now)
    assert {k: answer[k] for k in ("totals", "gpus")} == expected
    staleness = {p["owner"]: p["staleness"] for p in everyone["providers"]}
    offline = {o for o, s in staleness.items() if s == "offline"}
    assert offline and len(offline) < len(staleness), "the clock splits the fleet"
    assert answer["totals"]["providers"] <= len(staleness) - len(offline)
    everything = counted(database_url, fleet_schema, now + timedelta(days=-3650))
    assert everything["totals"]["installed"] > answer["totals"]["installed"]
    assert answer["asOf"]["schema"] == fleet_schema and "position" in answer["asOf"]
    assert answer["onlineSince"] == iso(now - timedelta(seconds=TTL_SECONDS))


@pytest.mark.parametrize("wanted", [{"vendor": "nvidia"}, {"region": "us-east"},
                                    {"auditor": AUDITOR},
                                    {"vendor": "amd", "region": "eu-central"}])
def test_each_filter_narrows_the_count_like_the_tables(
        database_url: str, fleet_schema: str, wanted: dict[str, str]) -> None:
    now = service_clock(database_url, fleet_schema)
    with client(database_url, fleet_schema, now, online_ttl_seconds=TTL_SECONDS) as http:
        answer = http.get("/v1/gpus", params=wanted).json()
    expected = counted(database_url, fleet_schema, now, **wanted)
    assert {k: answer[k] for k in ("totals", "gpus")} == expected
    assert expected["totals"]["installed"] > 0, "the filter keeps some GPUs"


def test_a_model_filter_keeps_one_model_and_matches_case_insensitively(
        database_url: str, fleet_schema: str) -> None:
    now = service_clock(database_url, fleet_schema)
    with client(database_url, fleet_schema, now, online_ttl_seconds=TTL_SECONDS) as http:
        every = http.get("/v1/gpus").json()["gpus"]
        model = every[0]["model"]
        answer = http.get("/v1/gpus", params={"model": model.upper()}).json()
    assert answer["gpus"] == [g for g in every if g["model"] == model]
    assert answer["totals"]["installed"] == sum(g["installed"] for g in answer["gpus"])
