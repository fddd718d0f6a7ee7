"""`hwledger bench gpus` at a tiny size: every filter is timed and the SQL agrees with the
naive count."""

from __future__ import annotations

from hwledger.deploy.bench.gpus import run_gpu_benchmark


def test_bench_gpus_times_every_filter_and_agrees_with_the_naive_count(
        database_url: str) -> None:
    lines: list[str] = []
    figures = run_gpu_benchmark(database_url, providers=300, requests=3, naive_sample=1,
                                say=lines.append)
    assert figures["naive_agrees_with_sql"] is True
    assert 0 < figures["providers_online"] < figures["providers"]
    assert figures["gpu_slots"] > 0
    for name in ("unfiltered", "vendor_nvidia", "model_h100", "region_us-west",
                 "auditor_akash1auditor"):
        assert figures[f"{name}_p99_ms"] >= figures[f"{name}_p50_ms"] > 0
    assert any(line.startswith("/v1/gpus unfiltered") for line in lines)
