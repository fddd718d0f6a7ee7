"""`hwledger bench query`: prefilter latency and HTTP throughput against two baselines, and
`exact=true`.

Setup bulk-loads synthetic `provider_inventory` rows (1-8 nodes per provider, a realistic GPU
mix, half the A100s 40 GB, some GPUs busy, some providers offline) and their nodes into a
fresh schema with COPY, then times, for the same generated GroupSpec requests: the SQL
prefilter (one statement), the peer-shaped baseline (the same WHERE clauses as plain SQL over a
copy of the table with no GIN index and no planner guards, `Statements.peer`), the HTTP API
(`hwledger serve` in its own process, keep-alive clients), and the naive baseline that loads
every provider row and filters in Python. Both baselines' answers double as cross-checks of the
SQL. EXPLAIN of a selective GPU request shows whether the GIN index is used. `exact=true` and
the bin-packer per candidate, against the code before issue 15, are `deploy.bench.exact`'s.
"""

from __future__ import annotations

import json
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Integer, MetaData, and_, bindparam, select, true

from hwledger.deploy.bench.exact import BASELINE_COMMIT, time_bin_packing, time_exact, write_nodes
from hwledger.deploy.bench.fleet import synthetic_provider
from hwledger.deploy.bench.http_load import (
    cpu_seconds,
    http_server,
    postgres_cpu_seconds,
    time_http,
)
from hwledger.deploy.bench.requests import false_positive_request, naive_match, synthetic_request
from hwledger.deploy.bench.stats import ms, percentile
from hwledger.query import prefilter_conditions, prefilter_sql, repository
from hwledger.query.aggregator import parse_group_spec
from hwledger.query.screening_filter import BidScreeningFilter, screening_filter
from hwledger.query.service import DEFAULT_LIMIT
from hwledger.schemas.db import connect
from hwledger.schemas.migrations import drop_schema, migrate
from hwledger.schemas.tables import provider_inventory

COLUMNS = tuple(c.name for c in provider_inventory.columns)


@dataclass
class Setup:
    database_url: str
    schema: str
    now: datetime


PEER_TABLE = "peer_inventory"
peer_inventory = provider_inventory.to_metadata(MetaData(), name=PEER_TABLE)
"""The peer-shaped baseline's table: provider_inventory's rows and columns, its primary key
and no other index."""


@contextmanager
def bench_schema(database_url: str, providers: int, seed: int) -> Iterator[Setup]:
    """A fresh schema with `providers` synthetic inventory rows, their nodes (`write_nodes`)
    and the peer baseline's copy of the rows, dropped afterwards."""
    schema = f"bench_query_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    rng = random.Random(seed)
    with connect(database_url, None) as conn:
        migrate(conn, schema)
    try:
        with connect(database_url, schema) as conn:
            inventories = []
            with conn.cursor() as cur, cur.copy(
                    f"COPY provider_inventory ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for index in range(providers):
                    row, inventory = synthetic_provider(rng, index, now)
                    inventories.append(inventory)
                    copy.write_row([Jsonb(row[c]) if isinstance(row[c], dict) else row[c]
                                    for c in COLUMNS])
            write_nodes(conn, iter(inventories), now)
            del inventories
            conn.execute(  # the offsets a projector of a 6-partition topic leaves
                "INSERT INTO projection_offsets (projection, topic, partition, next_offset, "
                "last_event_at) SELECT 'read_model', 'hwledger.events', p, %s, %s "
                "FROM generate_series(0, 5) AS p", (providers * 10, now))
            conn.execute(f"CREATE TABLE {PEER_TABLE} (LIKE provider_inventory INCLUDING "
                         f"DEFAULTS INCLUDING CONSTRAINTS)")
            conn.execute(f"INSERT INTO {PEER_TABLE} SELECT * FROM provider_inventory")
            conn.execute(f"ALTER TABLE {PEER_TABLE} ADD PRIMARY KEY (provider_id)")
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
        yield Setup(database_url, schema, now)
    finally:
        drop_schema(database_url, schema)


@dataclass(frozen=True)
class Statements:
    """Builds the service's statements as the service does: on `schema`, with its statistics'
    shares and the online TTL."""

    schema: str
    shares: prefilter_conditions.Shares
    online_since: datetime

    @classmethod
    def read(cls, conn: psycopg.Connection[Any], schema: str, online_since: datetime
             ) -> Statements:
        row = conn.execute(prefilter_conditions.SHARES_SQL, {"schema": schema}).fetchone()
        return cls(schema, prefilter_conditions.shares_from(row), online_since)

    def prefilter(self, screen: BidScreeningFilter, limit: int | None, ordered: bool = False
                  ) -> prefilter_sql.Prefilter:
        return prefilter_sql.prefilter(screen, self.online_since, limit, self.shares,
                                    ordered=ordered)

    def answer(self, screen: BidScreeningFilter, probe: int | None, ordered: bool = False
               ) -> tuple[str, dict[str, Any]]:
        return self.prefilter(screen, probe, ordered).answer_sql(self.schema)

    def peer(self, screen: BidScreeningFilter, limit: int, ordered: bool
             ) -> tuple[str, dict[str, Any]]:
        """The peer-shaped baseline: the prefilter's WHERE clauses as one plain statement over
        `peer_inventory` (no GIN index, no fence, no statistics-driven choices), the first
        `limit` providers (by owner when `ordered`, as a paged answer) with the columns the
        answer shows."""
        query = prefilter_sql.prefilter(screen, self.online_since, limit)
        p = peer_inventory.c
        columns = {c.name: c for c in p}
        statement = (select(p.provider_id, p.host_uri, p.audited_by, p.gpu_models,
                            p.last_seen_at)
                     .where(and_(true(), *(prefilter_conditions.clause(kind, name, columns)
                                           for kind, name in query.shape)))
                     .limit(bindparam("limit", type_=Integer)))
        if ordered:
            statement = statement.order_by(peer_inventory.c.provider_id)
        sql, params = repository.compiled(statement, query.params, schema=self.schema)
        return sql, prefilter_sql.driver_params(params)


def time_sql(conn: psycopg.Connection[Any], statements: Statements,
             screens: Sequence[BidScreeningFilter], probe: int | None, ordered: bool = False
             ) -> tuple[list[float], list[set[str]]]:
    """Per-request seconds of the service's one statement (projection position + candidates as
    JSON, `probe` = the service's limit + 1 or None for no limit, by owner when `ordered` as a
    paged answer; execute + fetch) and its answers."""
    seconds, answers = [], []
    for screen in screens:
        sql, params = statements.answer(screen, probe, ordered)
        started = time.perf_counter()
        row = conn.execute(sql, params).fetchone()
        seconds.append(time.perf_counter() - started)
        answers.append({p["owner"] for p in json.loads(row[3])} if row else set())
    return seconds, answers


def server_times(conn: psycopg.Connection[Any], statements: Statements,
                 screens: Sequence[BidScreeningFilter], probe: int) -> list[float]:
    """Per-request planning + execution seconds as Postgres itself reports them (EXPLAIN
    ANALYZE): the statement's cost without client-side scheduling noise."""
    seconds = []
    for screen in screens:
        sql, params = statements.answer(screen, probe)
        row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchone()
        plan = row[0][0] if row else {}
        seconds.append((plan.get("Planning Time", 0) + plan.get("Execution Time", 0)) / 1000)
    return seconds


def time_peer(conn: psycopg.Connection[Any], statements: Statements,
              screens: Sequence[BidScreeningFilter], limit: int, ordered: bool
              ) -> tuple[list[float], list[set[str]]]:
    """Per-request seconds of the peer-shaped baseline (execute + fetch) and its answers, on a
    connection with the default session settings."""
    seconds, answers = [], []
    for screen in screens:
        sql, params = statements.peer(screen, limit, ordered)
        started = time.perf_counter()
        rows = conn.execute(sql, params).fetchall()
        seconds.append(time.perf_counter() - started)
        answers.append({r[0] for r in rows})
    return seconds, answers


def time_naive(conn: psycopg.Connection[Any], screens: Sequence[BidScreeningFilter],
               online_since: datetime) -> tuple[list[float], list[set[str]]]:
    """Per-request seconds of load-everything-then-filter, and its answers."""
    seconds, answers = [], []
    for screen in screens:
        started = time.perf_counter()
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            rows = cur.execute("SELECT * FROM provider_inventory").fetchall()
        answers.append({r["provider_id"] for r in rows if naive_match(r, screen, online_since)})
        seconds.append(time.perf_counter() - started)
    return seconds, answers


def explain_selective(conn: psycopg.Connection[Any], statements: Statements) -> str:
    """EXPLAIN of a request for a rare GPU model."""
    screen = screening_filter(parse_group_spec({"resources": [{"count": 1, "resource": {
        "cpu": {"units": {"val": "8000"}}, "gpu": {"units": {"val": "8"}, "attributes": [
            {"key": "vendor/nvidia/model/b200", "value": "true"}]}}}]}))
    query = statements.prefilter(screen, 1000)
    sql, params = repository.compiled(query.statement, query.params)
    rows = conn.execute("EXPLAIN " + sql, prefilter_sql.driver_params(params)).fetchall()
    return "\n".join(str(r[0]) for r in rows)


def run_benchmark(database_url: str, *, providers: int, requests: int, naive_sample: int,
                  http_requests: int, clients: int, port: int, workers: int = 1, seed: int = 7,
                  http_rounds: int = 5, exact_requests: int = 200, packing_sample: int = 50,
                  say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run everything and return the figures (also printed as they come)."""
    rng = random.Random(seed + 1)
    documents = [synthetic_request(rng) for _ in range(requests)]
    groups = [parse_group_spec(d) for d in documents]
    screens = [screening_filter(g) for g in groups]
    false_positives = [parse_group_spec(false_positive_request(rng))
                       for _ in range(max(1, exact_requests // 4))]
    started = time.perf_counter()
    with bench_schema(database_url, providers, seed) as setup:
        say(f"loaded {providers} providers in {time.perf_counter() - started:.1f} s "
            f"(schema {setup.schema})")
        online_since = setup.now - timedelta(seconds=900)
        with connect(database_url, setup.schema, autocommit=True) as conn:
            conn.execute(prefilter_sql.SCREENING_SESSION)  # planned as the service plans it
            statements = Statements.read(conn, setup.schema, online_since)
            explain = explain_selective(conn, statements)
            gin = "provider_inventory_gpu_models_free" in explain
            say("EXPLAIN of a selective GPU request (nvidia/b200):\n" + explain)
            probe = DEFAULT_LIMIT + 1  # as the service asks
            time_sql(conn, statements, screens[:20], probe)  # warm caches
            sql_seconds, sql_answers = time_sql(conn, statements, screens, probe)
            time_sql(conn, statements, screens[:20], probe, ordered=True)
            paged_seconds, paged_answers = time_sql(conn, statements, screens, probe,
                                                    ordered=True)
            server = server_times(conn, statements, screens, probe)
            unlimited = time_sql(conn, statements, screens[:naive_sample], None)[1]
            naive_seconds, naive_answers = time_naive(conn, screens[:naive_sample],
                                                      online_since)
        with connect(database_url, setup.schema, autocommit=True) as conn:  # default session
            time_peer(conn, statements, screens[:20], DEFAULT_LIMIT, False)  # warm caches
            peer_seconds, peer_answers = time_peer(conn, statements, screens, DEFAULT_LIMIT,
                                                   False)
            peer_paged_seconds, peer_paged_answers = time_peer(conn, statements, screens,
                                                               DEFAULT_LIMIT, True)
        # scan orders differ, so unordered answers agree in size; paged ones are the same rows
        peer_agrees = ([len(a) for a in peer_answers] == [len(a) for a in sql_answers]
                       and peer_paged_answers == paged_answers)
        for name, seconds in (("SQL, paged (by owner)", paged_seconds),
                              ("peer-shaped baseline (the same WHERE as plain SQL, no GIN "
                               "index, no planner guards)", peer_seconds),
                              ("  peer-shaped, paged (by owner)", peer_paged_seconds)):
            say(f"{name} over {requests} requests: p50 {ms(statistics.median(seconds))} ms, "
                f"p99 {ms(percentile(seconds, .99))} ms")
        say(f"peer-shaped answers agree with SQL's: {peer_agrees}")
        exact = time_exact(database_url, setup.schema, setup.now, groups[:exact_requests],
                           DEFAULT_LIMIT)
        fp = time_exact(database_url, setup.schema, setup.now, false_positives, DEFAULT_LIMIT)
        for name, times in (("exact=true (in process, limit 100)", exact),
                            ("  false-positive requests (4-8 x a100/ram/80Gi)", fp)):
            say(f"{name} over {len(times.seconds)} requests: p50 "
                f"{ms(statistics.median(times.seconds))} ms, p99 "
                f"{ms(percentile(times.seconds, .99))} ms, {times.rps:.0f} requests/s, "
                f"candidates examined p50 {statistics.median(times.examined)} max "
                f"{max(times.examined)}; 422 too_costly: {times.too_costly}, 503 over_budget: "
                f"{times.over_budget}")
        cases = [(g, sorted(a)) for g, a in zip(groups[:packing_sample],
                                                 sql_answers[:packing_sample], strict=True)]
        packing = time_bin_packing(database_url, setup.schema, cases)
        say(f"bin-packing per candidate (inventory read + placement / placement alone), "
            f"{sum(len(o) for _, o in cases)} candidates: " + ", ".join(
                f"{name} {packing.get(f'{name}_us_per_candidate')} / "
                f"{packing.get(f'{name}_place_us_per_candidate')} us"
                for name in ("search", "greedy", "old")) + f" (old = {BASELINE_COMMIT[:7]})")
        agree = unlimited == naive_answers
        matched = [len(a) for a in sql_answers]
        say(f"SQL prefilter over {requests} requests: p50 {ms(statistics.median(sql_seconds))} ms, "
            f"p99 {ms(percentile(sql_seconds, .99))} ms, median candidates "
            f"{statistics.median(matched)} (limit {DEFAULT_LIMIT})")
        say(f"  as Postgres reports it (EXPLAIN ANALYZE planning + execution): p50 "
            f"{ms(statistics.median(server))} ms, p99 {ms(percentile(server, .99))} ms")
        say(f"naive baseline (load all rows, filter in Python) over {naive_sample} requests: "
            f"p50 {ms(statistics.median(naive_seconds))} ms; same answers as SQL: {agree}")
        with http_server(database_url, setup.schema, port, workers) as service_process:
            bodies = [json.dumps(d).encode() for d in documents]
            time_http(port, bodies, clients, len(bodies))  # warm up: every shape seen once
            before = (cpu_seconds(service_process), time.process_time(), postgres_cpu_seconds())
            rounds = [time_http(port, bodies, clients, http_requests)
                      for _ in range(http_rounds)]
            done = http_requests * http_rounds
            server_cpu, client_cpu, postgres_cpu = (
                (after - start) / done for after, start in zip(
                    (cpu_seconds(service_process), time.process_time(), postgres_cpu_seconds()),
                    before, strict=True))
        rps = statistics.median(r[0] for r in rounds)
        latencies = [seconds for r in rounds for seconds in r[1]]
        failures = sum(r[2] for r in rounds)
        say(f"HTTP POST /v1/bid-screening, {workers} server process(es), {clients} keep-alive "
            f"clients, {http_rounds} rounds of {http_requests} requests: "
            f"{', '.join(f'{r[0]:.0f}' for r in rounds)} req/s (median {rps:.0f}), "
            f"p50 {ms(statistics.median(latencies))} ms, "
            f"p99 {ms(percentile(latencies, .99))} ms, non-200: {failures}")
        say(f"  CPU per request: service {ms(server_cpu)} ms, load client {ms(client_cpu)} ms, "
            f"local Postgres processes {ms(postgres_cpu)} ms")
    naive_rps = 1 / statistics.median(naive_seconds)
    figures = {
        "providers": providers, "requests": requests, "http_workers": workers,
        "sql_p50_ms": ms(statistics.median(sql_seconds)), "sql_p99_ms": ms(percentile(sql_seconds,
                                                                                .99)),
        "sql_server_p50_ms": ms(statistics.median(server)),
        "sql_server_p99_ms": ms(percentile(server, .99)),
        "naive_p50_ms": ms(statistics.median(naive_seconds)), "naive_sample": naive_sample,
        "sql_vs_naive_p50_ratio": round(statistics.median(naive_seconds)
                                        / statistics.median(sql_seconds), 1),
        "http_rps": round(rps, 1), "http_rounds_rps": [round(r[0], 1) for r in rounds],
        "http_p50_ms": ms(statistics.median(latencies)),
        "http_p99_ms": ms(percentile(latencies, .99)), "http_non_200": failures,
        "http_service_cpu_ms_per_request": ms(server_cpu),
        "http_client_cpu_ms_per_request": ms(client_cpu),
        "http_postgres_cpu_ms_per_request": ms(postgres_cpu),
        "http_vs_naive_rps_ratio": round(rps / naive_rps, 1),
        "naive_agrees_with_sql": agree, "explain_uses_gin": gin,
        "peer_p50_ms": ms(statistics.median(peer_seconds)),
        "peer_p99_ms": ms(percentile(peer_seconds, .99)),
        "sql_vs_peer_p50_ratio": round(statistics.median(peer_seconds)
                                       / statistics.median(sql_seconds), 1),
        "sql_paged_p50_ms": ms(statistics.median(paged_seconds)),
        "sql_paged_p99_ms": ms(percentile(paged_seconds, .99)),
        "peer_paged_p50_ms": ms(statistics.median(peer_paged_seconds)),
        "peer_paged_p99_ms": ms(percentile(peer_paged_seconds, .99)),
        "sql_paged_vs_peer_paged_p50_ratio": round(statistics.median(peer_paged_seconds)
                                                   / statistics.median(paged_seconds), 1),
        "peer_agrees_with_sql": peer_agrees,
        "exact_requests": len(exact.seconds),
        **{f"{prefix}_{key}": value for prefix, times in (("exact", exact), ("exact_fp", fp))
           for key, value in (
               ("p50_ms", ms(statistics.median(times.seconds))),
               ("p99_ms", ms(percentile(times.seconds, .99))), ("rps", round(times.rps, 1)),
               ("examined_p50", statistics.median(times.examined)),
               ("examined_max", max(times.examined)), ("too_costly", times.too_costly),
               ("over_budget", times.over_budget))},
        **{f"binpack_{k}": v for k, v in packing.items()},
    }
    if packing.get("old_us_per_candidate"):
        figures["binpack_old_vs_search_ratio"] = round(
            packing["old_us_per_candidate"] / packing["search_us_per_candidate"], 1)
        figures["binpack_place_old_vs_search_ratio"] = round(
            packing["old_place_us_per_candidate"] / packing["search_place_us_per_candidate"], 1)
    say(f"ratios: SQL p50 {figures['sql_vs_naive_p50_ratio']}x faster than naive and "
        f"{figures['sql_vs_peer_p50_ratio']}x than the peer-shaped SQL; HTTP "
        f"{figures['http_vs_naive_rps_ratio']}x the naive requests/s; bin-packing per candidate "
        f"{figures.get('binpack_old_vs_search_ratio')}x faster than {BASELINE_COMMIT[:7]}")
    return figures
