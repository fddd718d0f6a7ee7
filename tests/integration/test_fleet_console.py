"""`/v1/gpus` and `/v1/providers` over a synthetic fleet history: the GPU counts equal a count
made here from the normalized tables (current snapshots' GPU links, unfinished runs' slots,
providers' last sighting), offline providers left out, with each filter."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from hwledger.projectors import apply_events
from hwledger.projectors.synthetic import history
from hwledger.query.binpacker import interface_family
from hwledger.schemas.db import connect
from hwledger.schemas.tokens import gpu_tokens
from tests.factories import provider_audited
from tests.integration.query_support import client, fresh_schema

GiB = 2**30
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


def _rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(sql).fetchall()]


def counted(database_url: str, schema: str, now: datetime, *, vendor: str | None = None,
            region: str | None = None, auditor: str | None = None) -> dict[str, Any]:
    """The `/v1/gpus` figures counted from the normalized tables, not the views."""
    with connect(database_url, schema) as conn:
        seen = dict(_rows(conn, "SELECT provider_id, last_seen_at FROM provider_inventory"))
        regions = {p: (a or {}).get("region") for p, a in _rows(
            conn, "SELECT provider_id, attributes FROM providers")}
        audits = defaultdict(set)
        for provider, who in _rows(conn, "SELECT provider_id, auditor FROM provider_audits"):
            audits[provider].add(who)
        current = _rows(conn, "SELECT n.provider_id, n.node_id, s.system_hardware_id "
                              "FROM nodes n JOIN hardware_snapshots s "
                              "ON s.event_id = n.current_snapshot_event_id")
        links = defaultdict(list)
        for system, slot, gpu in _rows(conn, "SELECT system_hardware_id, slot_index, "
                                             "gpu_hardware_id FROM system_gpu_link"):
            links[system].append((slot, gpu))
        kinds = {g: (v, m, b, i) for g, v, m, b, i in _rows(
            conn, "SELECT gpu_hardware_id, vendor, model, vram_bytes, interface "
                  "FROM gpu_hardware")}
        held = set(_rows(conn, "SELECT r.provider_id, r.node_id, u.slot_index FROM runs r "
                               "JOIN run_gpu_usage u USING (provider_id, run_id) "
                               "WHERE r.finished_event_id IS NULL"))
    online = {p for p, at in seen.items()
              if at is not None and at >= now - timedelta(seconds=TTL_SECONDS)
              and (region is None or regions.get(p) == region)
              and (auditor is None or auditor in audits[p])}
    groups: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(
        lambda: {"installed": 0, "free": 0, "providers": set(), "providersFree": set()})
    total = groups[()]  # the totals, under the empty key
    for provider, node, system in current:
        if provider not in online:
            continue
        for slot, gpu in links[system]:
            v, m, vram, interface = kinds[gpu]
            vendor_token, model_token = gpu_tokens(v, m)
            if vendor is not None and vendor_token != vendor:
                continue
            key = (vendor_token, model_token.split("/", 1)[1], f"{round(vram / GiB)}Gi",
                   interface_family(interface))
            free = (provider, node, slot) not in held
            for group in (groups[key], total):
                group["installed"] += 1
                group["free"] += free
                group["providers"].add(provider)
                if free:
                    group["providersFree"].add(provider)

    def figures(group: dict[str, Any]) -> dict[str, int]:
        return {k: len(v) if isinstance(v, set) else v for k, v in group.items()}

    del groups[()]
    return {"totals": figures(total),
            "gpus": [{"vendor": k[0], "model": k[1], "ram": k[2], "interface": k[3],
                      **figures(g)} for k, g in sorted(groups.items())]}


def service_clock(database_url: str, schema: str) -> datetime:
    """A clock at which about half the providers are offline (seen over the TTL ago)."""
    with connect(database_url, schema) as conn:
        seen: list[datetime] = sorted(
            at for (at,) in _rows(conn, "SELECT last_seen_at FROM provider_inventory"))
    return seen[len(seen) // 2] + timedelta(seconds=TTL_SECONDS)


def test_gpu_counts_equal_the_normalized_tables_offline_providers_excluded(
        database_url: str, fleet_schema: str) -> None:
    now = service_clock(database_url, fleet_schema)
    with client(database_url, fleet_schema, now, online_ttl_seconds=TTL_SECONDS) as http:
        answer = http.get("/v1/gpus").json()
        everyone = http.get("/v1/providers?limit=1000").json()
    expected = counted(database_url, fleet_schema, now)
    assert {k: answer[k] for k in ("totals", "gpus")} == expected
    staleness = {p["owner"]: p["staleness"] for p in everyone["providers"]}
    offline = {o for o, s in staleness.items() if s == "offline"}
    assert offline and len(offline) < len(staleness), "the clock splits the fleet"
    assert answer["totals"]["providers"] <= len(staleness) - len(offline)
    everything = counted(database_url, fleet_schema, now + timedelta(days=-3650))
    assert everything["totals"]["installed"] > answer["totals"]["installed"]
    assert answer["asOf"]["schema"] == fleet_schema and "position" in answer["asOf"]
    assert answer["onlineSince"] == (now - timedelta(seconds=TTL_SECONDS)).isoformat()


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
