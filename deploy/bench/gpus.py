"""`hwledger bench gpus`: `/v1/gpus` latency over a projected synthetic fleet vs a naive count.

Setup projects `deploy.bench.fleet.history` (`providers` providers of 3 nodes with 1-8
catalog GPUs, runs holding some of them, two auditors) into a fresh schema with the projector's
writer, then `VACUUM ANALYZE`; the service clock is set so that 5% of the providers are
offline. It times `QueryService.gpus` (the `asOf` position and the grouped count in one
snapshot), unfiltered and with each filter, and the naive baseline `naive_gpu_availability`:
the normalized tables read whole and counted in Python, whose answer doubles as a check of the
SQL.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import psycopg

from hwledger.deploy.bench.fleet import history
from hwledger.deploy.bench.stats import ms, percentile
from hwledger.projectors.plan import Record
from hwledger.projectors.writer import Writer
from hwledger.query.fleet import COUNTS, FleetFilter
from hwledger.query.gpu_attributes import interface_family
from hwledger.query.reads import Reads
from hwledger.query.service import QueryService, make_engine
from hwledger.schemas import codec
from hwledger.schemas.db import connect
from hwledger.schemas.errors import UserError
from hwledger.schemas.migrations import scratch_schema
from hwledger.schemas.tokens import gpu_tokens
from hwledger.schemas.units import GiB

TTL_SECONDS = 900
BATCH = 5000
FILTERS = (FleetFilter(), FleetFilter(vendor="nvidia"), FleetFilter(model="h100"),
           FleetFilter(region="us-west"), FleetFilter(auditor="akash1auditor"))


def _rows(conn: psycopg.Connection[Any], sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(sql).fetchall()]


def naive_gpu_availability(conn: psycopg.Connection[Any], online_since: datetime,
                           wanted: FleetFilter) -> dict[str, Any]:
    """`/v1/gpus`'s `totals` and `gpus` counted in Python from the normalized tables (current
    snapshots' GPU links, unfinished runs' slots, providers' attributes and audits), not the
    views: the slots of providers last seen at `online_since` or later."""
    seen = dict(_rows(conn, "SELECT provider_id, last_seen_at FROM provider_inventory"))
    regions = {p: (a or {}).get("region")
               for p, a in _rows(conn, "SELECT provider_id, attributes FROM providers")}
    audits: dict[str, set[str]] = defaultdict(set)
    for provider, auditor in _rows(conn, "SELECT provider_id, auditor FROM provider_audits "
                                         "WHERE attributes <> '{}'::jsonb"):
        audits[provider].add(auditor)  # an audit signs something only with attributes
    current = _rows(conn, "SELECT n.provider_id, n.node_id, s.system_hardware_id FROM nodes n "
                          "JOIN hardware_snapshots s ON s.event_id = n.current_snapshot_event_id")
    links: dict[Any, list[tuple[int, Any]]] = defaultdict(list)
    for system, slot, gpu in _rows(conn, "SELECT system_hardware_id, slot_index, "
                                         "gpu_hardware_id FROM system_gpu_link"):
        links[system].append((slot, gpu))
    kinds = {g: (v, m, b, i) for g, v, m, b, i in _rows(
        conn, "SELECT gpu_hardware_id, vendor, model, vram_bytes, interface FROM gpu_hardware")}
    held = set(_rows(conn, "SELECT r.provider_id, r.node_id, u.slot_index FROM runs r "
                           "JOIN run_gpu_usage u USING (provider_id, run_id) "
                           "WHERE r.finished_event_id IS NULL"))
    online = {p for p, at in seen.items()
              if at is not None and at >= online_since
              and wanted.region in (None, regions.get(p))
              and (wanted.auditor is None or wanted.auditor in audits[p])}
    groups: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(
        lambda: {"installed": 0, "free": 0, "providers": set(), "providersFree": set()})
    total = groups[()]  # the totals, under the empty key
    for provider, node, system in current:
        if provider not in online:
            continue
        for slot, gpu in links[system]:
            vendor, model, vram, interface = kinds[gpu]
            vendor_token, model_token = gpu_tokens(vendor, model)
            model_name = model_token.split("/", 1)[1]
            if wanted.vendor not in (None, vendor_token) or wanted.model not in (None,
                                                                                  model_name):
                continue
            key = (vendor_token, model_name, round(vram / GiB), interface_family(interface))
            free = (provider, node, slot) not in held
            for group in (groups[key], total):
                group["installed"] += 1
                group["free"] += free
                group["providers"].add(provider)
                if free:
                    group["providersFree"].add(provider)
    del groups[()]

    def figures(group: dict[str, Any]) -> dict[str, int]:
        return {k: len(group[k]) if isinstance(group[k], set) else group[k] for k in COUNTS}

    return {"totals": figures(total),
            "gpus": [{"vendor": k[0], "model": k[1], "ram": f"{k[2]}Gi", "interface": k[3],
                      **figures(g)} for k, g in sorted(groups.items())]}


def project_fleet(conn: psycopg.Connection[Any], providers: int, seed: int) -> int:
    """The synthetic history of `providers` providers, projected in batches and committed;
    the events refused (dead letters), none for a sound history."""
    writer = Writer(conn, timedelta(hours=6))
    batch: list[Record] = []
    for offset, (kind, data) in enumerate(history(seed, providers, providers * 6)):
        batch.append(Record("bench", 0, offset, codec.encode(kind, data)))
        if len(batch) == BATCH:
            writer.apply(batch, {})
            conn.commit()
            batch = []
    writer.apply(batch, {})
    conn.commit()
    refused = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    conn.rollback()
    return int(refused[0]) if refused else 0


@contextmanager
def fleet_schema(database_url: str, providers: int, seed: int) -> Iterator[tuple[str, datetime]]:
    """A fresh schema with the projected fleet and the clock at which 5% of it is offline;
    dropped afterwards."""
    with scratch_schema(database_url, "bench_gpus") as schema:
        with connect(database_url, schema) as conn:
            refused = project_fleet(conn, providers, seed)
            if refused:
                raise UserError(f"{refused} events of the synthetic fleet were dead-lettered")
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
            seen = sorted(at for (at,) in _rows(
                conn, "SELECT last_seen_at FROM provider_inventory WHERE last_seen_at IS NOT "
                      "NULL"))
        yield schema, seen[len(seen) // 20] + timedelta(seconds=TTL_SECONDS)


def _timed(call: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    times, found = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        found = call()
        times.append(time.perf_counter() - started)
    return times, found


def run_gpu_benchmark(database_url: str, *, providers: int, requests: int, naive_sample: int,
                      seed: int = 7, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Set up, time `requests` answers per filter and `naive_sample` naive counts, and return
    the figures (also printed as they come)."""
    started = time.perf_counter()
    with fleet_schema(database_url, providers, seed) as (schema, now):
        say(f"projected {providers} providers in {time.perf_counter() - started:.1f} s "
            f"(schema {schema})")
        service = QueryService(make_engine(database_url, pool_size=1), schema=schema,
                               clock=lambda: now, online_ttl_seconds=TTL_SECONDS)
        reads = Reads(service)
        figures: dict[str, Any] = {"providers": providers, "requests_per_filter": requests}
        agree = True
        try:
            with connect(database_url, schema) as conn:
                counts = conn.execute(
                    "SELECT count(*), count(*) FILTER (WHERE last_seen_at >= %s) FROM "
                    "provider_inventory", (service.online_since(),)).fetchone()
                gpus = conn.execute("SELECT count(*) FROM node_gpus").fetchone()
                figures |= {"providers_online": counts and counts[1],
                            "gpu_slots": gpus and gpus[0]}
                for wanted in FILTERS:
                    name = "_".join(f"{k}_{v}" for k, v in asdict(wanted).items()
                                    if v is not None) or "unfiltered"
                    reads.gpus(wanted)  # warm-up
                    times, answer = _timed(partial(reads.gpus, wanted), requests)
                    figures[f"{name}_p50_ms"] = ms(percentile(times, 0.5))
                    figures[f"{name}_p99_ms"] = ms(percentile(times, 0.99))
                    say(f"/v1/gpus {name}: p50 {figures[f'{name}_p50_ms']} ms, "
                        f"p99 {figures[f'{name}_p99_ms']} ms, {answer['totals']}")
                    naive = naive_gpu_availability(conn, service.online_since(), wanted)
                    agree = agree and naive == {k: answer[k] for k in ("totals", "gpus")}
                naive_times, _ = _timed(
                    lambda: naive_gpu_availability(conn, service.online_since(), FleetFilter()),
                    naive_sample)
        finally:
            service.engine.dispose()
        figures["naive_p50_ms"] = ms(percentile(naive_times, 0.5))
        figures["sql_vs_naive_p50_ratio"] = round(
            figures["naive_p50_ms"] / max(figures["unfiltered_p50_ms"], 1e-3), 1)
        figures["naive_agrees_with_sql"] = agree
        say(f"naive count: p50 {figures['naive_p50_ms']} ms; agrees with the SQL: {agree}")
    return figures
