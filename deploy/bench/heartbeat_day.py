"""`hwledger bench heartbeat-day`: a day of heartbeats through the projector's writer, before
and after, side by side in one run, on the configured PostgreSQL.

Both sides project, through `Writer.apply` (fenced batches, as the projector commits them), a
day of `periods` 300-second periods of `sample` providers with `nodes` nodes each (the demo
fleet's hardware), into a schema of their own:
- before: every node publishes a full HardwareSnapshotted every period, into a schema as it
  was before migration 0007 (a btree on provider_inventory.last_seen_at, fill factor 100 for
  provider_inventory and nodes);
- after: every node publishes a NodeHeartbeated, a full snapshot only at the start and every
  `snapshot_every`-th period (the agent's safety net), into a schema of the current migrations.
The periods alternate between the sides, so both see the same machine. The first period (every
node's first snapshot) is the untimed start; measured are the periods after it: seconds in
`apply`, WAL bytes (`pg_current_wal_lsn` before and after each side's batches), and per table
the growth of heap and index sizes, updates, HOT updates and dead tuples
(`pg_stat_user_tables`). Autovacuum is off for both schemas' tables, so the sizes are the
bloat a day leaves before any vacuum (HOT pruning within a page still happens). Day figures
for `providers` providers scale the sample's linearly (rows and WAL are per node), and to the
288 periods of a day when fewer are measured.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from hwledger.deploy.bench.fleet import demo_snapshots
from hwledger.deploy.bench.soak import PERIOD_S
from hwledger.projectors.plan import Record
from hwledger.projectors.writer import Writer
from hwledger.schemas import codec
from hwledger.schemas.db import connect
from hwledger.schemas.events import EventData
from hwledger.schemas.migrations import drop_schema, prepare_schema

SIDES = ("before", "after")
DAY_PERIODS = 86_400 // PERIOD_S
TABLES = ("provider_inventory", "nodes", "hardware_snapshots", "applied_events")
T0 = datetime(2026, 11, 1, tzinfo=UTC)
TOPIC = "bench.heartbeat-day"
BEFORE_0007 = (
    "CREATE INDEX provider_inventory_last_seen_at ON provider_inventory (last_seen_at)",
    "ALTER TABLE provider_inventory SET (fillfactor = 100)",
    "ALTER TABLE nodes SET (fillfactor = 100)",
)
"""What migrations 0007 and 0009 changed, undone for the before side's schema."""



@dataclass(frozen=True)
class DayConfig:
    providers: int = 100_000
    sample: int = 250
    nodes: int = 4
    periods: int = 288
    snapshot_every: int = 12
    batch_size: int = 2000


def period_events(side: str, period: int, config: DayConfig,
                  templates: Sequence[dict[str, Any]]) -> list[EventData]:
    """What every node of the sample publishes in `period` (0 = the day's first) on `side`."""
    events: list[EventData] = []
    for p in range(config.sample):
        for n in range(config.nodes):
            template = templates[(p * config.nodes + n) % len(templates)]
            at = T0 + timedelta(seconds=period * PERIOD_S + (p * config.nodes + n) % PERIOD_S)
            ids = {"provider_id": f"hb-{p}", "node_id": f"node-{n}"}
            snapshot_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{side}/{p}/{n}/{period}"))
            if side == "before" or period % config.snapshot_every == 0:
                events.append(("HardwareSnapshotted", template | ids | {
                    "event_id": snapshot_id, "occurred_at": at}))
            else:
                last = period - period % config.snapshot_every
                events.append(("NodeHeartbeated", ids | {
                    "event_id": snapshot_id, "occurred_at": at,
                    "snapshot_event_id": str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                        f"{side}/{p}/{n}/{last}"))}))
    return events


@dataclass
class Side:
    """One side's schema, writer position and measured totals."""

    name: str
    schema: str
    offset: int = 0
    events: int = 0
    seconds: float = 0.0
    wal_bytes: int = 0
    start: dict[str, dict[str, int]] = field(default_factory=dict)
    end: dict[str, dict[str, int]] = field(default_factory=dict)


def _batches(records: Sequence[Record], size: int) -> Iterator[Sequence[Record]]:
    for start in range(0, len(records), size):
        yield records[start:start + size]


def _apply(writer: Writer, side: Side, events: Sequence[EventData], batch_size: int) -> None:
    records = [Record(TOPIC, 0, side.offset + i, codec.encode(kind, data))
               for i, (kind, data) in enumerate(events)]
    for batch in _batches(records, batch_size):
        expected = side.offset or None
        side.offset += len(batch)
        writer.apply(batch, {(TOPIC, 0): (expected, side.offset)})


def _lsn(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


STATS = """
SELECT relname, pg_relation_size(relid), pg_indexes_size(relid), n_tup_upd, n_tup_hot_upd,
       n_dead_tup, n_live_tup
FROM pg_stat_user_tables WHERE schemaname = %s AND relname = ANY(%s)
"""
STAT_NAMES = ("heap_bytes", "index_bytes", "updates", "hot_updates", "dead_tuples",
              "live_tuples")


def table_stats(database_url: str, conn: psycopg.Connection[Any], schema: str
                ) -> dict[str, dict[str, int]]:
    """Per table of TABLES: sizes and pg_stat_user_tables counts (flushed first)."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()
    with connect(database_url, None) as reader:
        rows = reader.execute(STATS, (schema, list(TABLES))).fetchall()
    return {str(r[0]): dict(zip(STAT_NAMES, (int(v) for v in r[1:]), strict=True))
            for r in rows}


def _prepare(database_url: str, side: str) -> str:
    schema = f"bench_hb_{side}_{uuid.uuid4().hex[:8]}"
    prepare_schema(database_url, schema)
    with connect(database_url, schema) as conn:
        for statement in BEFORE_0007 if side == "before" else ():
            conn.execute(statement)
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s",
                              (schema,)).fetchall()
        for (table,) in tables:
            conn.execute(sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = off)")
                         .format(sql.Identifier(table)))
        conn.commit()
    return schema


def run_day(database_url: str, config: DayConfig,
            progress: Callable[[int], None] = lambda period: None) -> dict[str, Side]:
    """Project the day on both sides (see the module docstring); schemas dropped after."""
    templates = demo_snapshots()
    sides = {name: Side(name, _prepare(database_url, name)) for name in SIDES}
    try:
        conns = {name: connect(database_url, side.schema) for name, side in sides.items()}
        writers = {name: Writer(conn, timedelta(hours=6)) for name, conn in conns.items()}
        for period in range(config.periods):
            for name, side in sides.items():
                events = period_events(name, period, config, templates)
                conn = conns[name]
                wal = _lsn(conn)
                started = time.perf_counter()
                _apply(writers[name], side, events, config.batch_size)
                if period == 0:
                    side.start = table_stats(database_url, conn, side.schema)
                    continue
                side.seconds += time.perf_counter() - started
                side.wal_bytes += _lsn(conn) - wal
                side.events += len(events)
            progress(period)
        for name, side in sides.items():
            side.end = table_stats(database_url, conns[name], side.schema)
        for conn in conns.values():
            conn.close()
    finally:
        for side in sides.values():
            drop_schema(database_url, side.schema)
    return sides


def _growth(side: Side, table: str, stat: str) -> int:
    return side.end.get(table, {}).get(stat, 0) - side.start.get(table, {}).get(stat, 0)


def figures(sides: dict[str, Side], config: DayConfig) -> dict[str, Any]:
    """The JSON line: measured on the sample, day figures scaled to `providers` (and to a
    day's periods, linearly, when fewer were measured)."""
    scale = config.providers / config.sample * DAY_PERIODS / (config.periods - 1)
    found: dict[str, Any] = {
        "benchmark": "heartbeat-day", "providers": config.providers, "sample": config.sample,
        "nodes_per_provider": config.nodes, "periods": config.periods,
        "measured_periods": config.periods - 1, "snapshot_every": config.snapshot_every,
        "scale": round(scale, 2)}
    for name, side in sides.items():
        found[f"{name}_events_per_second"] = round(side.events / side.seconds, 1) \
            if side.seconds else None
        found[f"{name}_wal_bytes_per_event"] = round(side.wal_bytes / side.events, 1) \
            if side.events else None
        found[f"{name}_wal_gb_per_day"] = round(side.wal_bytes * scale / 1e9, 2)
        for table in TABLES:
            grown = _growth(side, table, "heap_bytes") + _growth(side, table, "index_bytes")
            found[f"{name}_{table}_growth_mb_per_day"] = round(grown * scale / 2**20, 1)
        for table in ("provider_inventory", "nodes"):
            updates = _growth(side, table, "updates")
            found[f"{name}_{table}_hot_ratio"] = round(
                _growth(side, table, "hot_updates") / updates, 3) if updates else None
            found[f"{name}_{table}_dead_tuples"] = side.end.get(table, {}).get("dead_tuples", 0)
    before, after = sides["before"], sides["after"]
    found["wal_ratio"] = round(before.wal_bytes / after.wal_bytes, 1) \
        if after.wal_bytes else None
    return found
