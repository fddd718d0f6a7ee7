"""`hwledger bench project` at a tiny size: every side runs and the ceiling writes the same rows."""

from __future__ import annotations

from typing import Any

import pytest

from hwledger.deploy.bench.project import BenchConfig, run_benchmark


@pytest.mark.slow
def test_bench_project_measures_every_side_and_its_ceiling_writes_the_same_rows(
        database_url: str, kafka_config: dict[str, Any]) -> None:
    figures = run_benchmark(BenchConfig(database_url=database_url, kafka=kafka_config,
                                        snapshots=400, batch_size=100, naive_seconds=1.0,
                                        providers=40))
    assert figures["events"] == 500 and figures["processes"] == 2
    assert figures["ceiling_rows_equal_projector"] is True
    for key in ("projector_events_per_s", "one_process_events_per_s", "ceiling_events_per_s",
                "ceiling_normalized_only_events_per_s", "naive_events_per_s"):
        assert figures[key] > 0, key
    assert figures["ceiling_normalized_only_events_per_s"] > figures["ceiling_events_per_s"]
