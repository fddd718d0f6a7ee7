"""`hwledger bench query` at a tiny size: every side runs, the naive and the peer-shaped baselines
agree with the SQL, the load client's requests all come back 200, EXPLAIN shows the GIN index,
and the exact side measures this bin-packer beside the old one on the same candidates."""

from __future__ import annotations

import pytest

from hwledger.deploy.bench.query import run_benchmark
from hwledger.deploy.local_processes import free_port


@pytest.mark.slow
def test_bench_query_measures_every_side_and_agrees_with_the_naive_filter(
        database_url: str) -> None:
    lines: list[str] = []
    figures = run_benchmark(database_url, providers=2000, requests=60, naive_sample=3,
                            http_requests=120, clients=3, port=free_port(), http_rounds=2,
                            exact_requests=20, packing_sample=5, say=lines.append)
    assert figures["naive_agrees_with_sql"] is True and figures["explain_uses_gin"] is True
    assert figures["http_non_200"] == 0 and len(figures["http_rounds_rps"]) == 2
    assert figures["http_rps"] > 0 and figures["sql_vs_naive_p50_ratio"] > 1
    assert figures["http_service_cpu_ms_per_request"] > 0
    assert any(line.startswith("HTTP POST /v1/bid-screening") for line in lines)
    assert figures["peer_agrees_with_sql"] is True and figures["sql_vs_peer_p50_ratio"] > 0
    assert figures["sql_paged_vs_peer_paged_p50_ratio"] > 0 and figures["sql_paged_p50_ms"] > 0
    assert figures["exact_requests"] == 20 and figures["exact_rps"] > 0
    assert figures["exact_p99_ms"] >= figures["exact_p50_ms"] > 0
    assert figures["exact_fp_examined_max"] > 100  # the false positives were read past
    assert figures["binpack_old_placed"] == figures["binpack_greedy_placed"] > 0
    assert figures["binpack_search_placed"] >= figures["binpack_greedy_placed"]
    assert figures["binpack_old_vs_search_ratio"] > 0
