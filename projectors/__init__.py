"""Projectors: the event log -> the Postgres read model, exactly once (DESIGN sections 4, 5).

- `plan`, `batch`, `rows`: the pure part's vocabulary (records, state, the Plan of named rows),
  what a batch refers to;
- `projection`, `snapshot_rows`: the pure part (events -> row changes, duplicates, parking,
  dead letters; a snapshot's content-addressed rows);
- `writer`, `statements`, `inventory_sql`, `dead_letters`: one transaction per batch with the
  offset compare-and-set fence, its bulk statements, the provider_inventory statements, dead
  letters and parked events;
- `service`, `config`, `replicas`: the consumer-group loop (`hwledger project`), its settings,
  its processes; `metrics`, `health`, `logcheck`: Prometheus, liveness and readiness, whether
  the log behind a partition is still the one read;
- `checksums`, `rebuild`, `verify`, `retention`: per-table checksums; replay into a fresh
  schema, switch readers, compare schemas; pruning applied events.

Two conveniences for other parts and their tests: `apply_events` projects events straight into
a connection's schema (no broker), `catch_up` projects a topic until it is caught up.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import psycopg

from hwledger.projectors.config import ProjectorConfig
from hwledger.projectors.metrics import Metrics
from hwledger.projectors.plan import Plan, Record
from hwledger.projectors.service import Projector
from hwledger.projectors.writer import Writer
from hwledger.schemas import codec

DEFAULT_PARK_TTL = timedelta(hours=6)


def apply_events(conn: psycopg.Connection[Any],
                 events: Iterable[tuple[str, Mapping[str, Any]]],
                 park_ttl: timedelta = DEFAULT_PARK_TTL) -> Plan:
    """Project (event_type, data) pairs in order into the connection's schema, as one batch.

    No offsets are stored; parked events and dead letters are recorded under a topic name of
    their own (`direct-<hex>`). Runs inside the caller's transaction when one is open.
    """
    topic = f"direct-{uuid.uuid4().hex[:12]}"
    records = [Record(topic, 0, i, codec.encode(kind, data))
               for i, (kind, data) in enumerate(events)]
    return Writer(conn, park_ttl).apply(records, {})


def catch_up(database_url: str, schema: str, kafka_config: Mapping[str, Any], topic: str, *,
             group_id: str | None = None, park_ttl: timedelta = DEFAULT_PARK_TTL) -> Metrics:
    """Project `topic` into `schema` until every partition is at its high watermark."""
    metrics = Metrics()
    Projector(ProjectorConfig(
        database_url=database_url, schema=schema, topic=topic,
        kafka={"session.timeout.ms": 2000, "heartbeat.interval.ms": 500, **kafka_config},
        group_id=group_id or f"catch-up-{schema}", park_ttl=park_ttl,
        exit_when_caught_up=True), metrics).run()
    return metrics
