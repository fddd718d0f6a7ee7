"""`hwledger bench rebuild`: replaying a whole log into a fresh schema, side by side with the
live projector's rate on the same log. Prints its figures, then one JSON line."""

from __future__ import annotations

import time
import uuid
from typing import Any

from hwledger.deploy.kafka_admin import ensure_topic
from hwledger.deploy.project_bench import (
    SNAPSHOT_WEIGHT,
    BenchConfig,
    create_schema,
    measure,
    publish_all,
)
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
    live_schema = create_schema(database_url)
    try:
        print(f"live projector (batch {LIVE_BATCH}) for up to {live_seconds:g}s ...", flush=True)
        live = measure(config, topic, live_schema, total, LIVE_BATCH, live_seconds)
    finally:
        drop_schema(database_url, live_schema)
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
        "rebuild_to_live": round(rate / live.rate, 2) if live.rate else 0.0,
        "goal_20k_per_s": rate >= 20_000, "goal_2x_live": bool(live.rate)
        and rate >= 2 * live.rate,
    }
