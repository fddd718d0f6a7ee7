"""`hwledger bench query`: prefilter latency and HTTP throughput against two baselines, and
`exact=true`.

Setup bulk-loads synthetic `provider_inventory` rows (1-8 nodes per provider, a realistic GPU
mix, half the A100s 40 GB and most 80 GB ones PCIe, some GPUs busy, some providers offline) and
their nodes into a fresh schema with COPY, then times, for the same generated GroupSpec
requests: the SQL prefilter (one statement), the peer-shaped baseline (the same WHERE clauses
as plain SQL over a copy of the table with no GIN index and no planner guards,
`Statements.peer`), the HTTP API (`hwledger serve` in its own process, keep-alive clients), and
the naive baseline that loads every provider row and filters in Python. Both baselines' answers
double as cross-checks of the SQL. EXPLAIN of a selective GPU request shows whether the GIN
index is used. The schema, the statements and the timers are `deploy.bench.query_statements`'s;
`exact=true` and the bin-packer per candidate, against the code before issue 15, are
`deploy.bench.exact`'s.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hwledger.deploy.bench.exact import BASELINE_COMMIT, time_bin_packing, time_exact
from hwledger.deploy.bench.http_load import (
    cpu_seconds,
    http_server,
    postgres_cpu_seconds,
    time_http,
)
from hwledger.deploy.bench.query_statements import (
    Statements,
    bench_schema,
    explain_selective,
    server_times,
    time_naive,
    time_peer,
    time_sql,
)
from hwledger.deploy.bench.requests import false_positive_request, synthetic_request
from hwledger.deploy.bench.stats import ms, percentile
from hwledger.query import prefilter_sql
from hwledger.query.aggregator import parse_group_spec
from hwledger.query.screening_filter import screening_filter
from hwledger.query.service import DEFAULT_LIMIT
from hwledger.schemas.db import connect


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
            gin = any(f"provider_inventory_{c}" in explain
                      for c in ("gpu_models_free", "gpu_node_tokens_free"))
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
                            ("  false-positive requests (4-8 x a100/80Gi/sxm)", fp)):
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
