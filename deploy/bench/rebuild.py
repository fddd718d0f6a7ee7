"""`hwledger bench rebuild`: replaying a whole log into a fresh schema, side by side with the
live projector's rate on the same log (the default single process, and as many processes as the
rebuild uses: `goal_2x_live` is judged against the former, `goal_2x_live_same_processes`
against the latter). Prints its figures, then one JSON line."""

from __future__ import annotations

import time
import uuid
from typing import Any

from hwledger.deploy.bench.project import (
    SNAPSHOT_WEIGHT,
    BenchConfig,
    create_schema,
    measure,
    publish_all,
)
from hwledger.deploy.kafka_admin import ensure_topic
from hwledger.projectors.rebuild import rebuild
from hwledger.schemas.migrations import drop_schema

LIVE_BATCH = 2000


def run_rebuild_benchmark(database_url: str, kafka: dict[str, Any], events: int,
                          live_seconds: float, batch_size: int, workers: int) -> dict[str, Any]:
    config = BenchConfig(database_url=database_url, kafka=kafka,
                         snapshots=int(events * SNAPSHOT_WEIGHT), batch_size=LIVE_BATCH,
                         naive_seconds=0)
    topic = f"hwledger.bench.rebuild.{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka, topic, 6)
    print(f"publishing ~{events:,} events to {topic} ...", flush=True)
    total, _ = publish_all(config, topic)
    live_schemas = [create_schema(database_url) for _ in range(2)]
    try:
        print(f"live projector (batch {LIVE_BATCH}, 1 process) for up to {live_seconds:g}s ...",
              flush=True)
        live = measure(config, topic, live_schemas[0], total, LIVE_BATCH, live_seconds)
        print(f"live projector with {workers} processes for up to {live_seconds:g}s ...",
              flush=True)
        live_n = measure(config, topic, live_schemas[1], total, LIVE_BATCH, live_seconds,
                         workers)
    finally:
        for schema in live_schemas:
            drop_schema(database_url, schema)
    print(f"rebuild of {total:,} events (batch {batch_size}, {workers} processes) ...",
          flush=True)
    started = time.monotonic()
    result = rebuild(database_url, topic, kafka, switch=False, batch_size=batch_size,
                     workers=workers)
    seconds = time.monotonic() - started
    drop_schema(database_url, result.schema)
    rate = result.events / seconds if seconds else 0.0
    return {
        "benchmark": "rebuild", "events": total, "rebuilt_events": result.events,
        "workers": workers,
        "rebuild_seconds": round(seconds, 1), "rebuild_events_per_s": round(rate, 1),
        "live_events_per_s": round(live.rate, 1), "live_measured_events": live.events,
        "live_same_processes_events_per_s": round(live_n.rate, 1),
        "rebuild_to_live": round(rate / live.rate, 2) if live.rate else 0.0,
        "rebuild_to_live_same_processes": round(rate / live_n.rate, 2) if live_n.rate else 0.0,
        "goal_20k_per_s": rate >= 20_000,
        "goal_2x_live": bool(live.rate) and rate >= 2 * live.rate,
        "goal_2x_live_same_processes": bool(live_n.rate) and rate >= 2 * live_n.rate,
    }
