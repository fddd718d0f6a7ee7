"""`hwledger bench project`: events/s from the broker to committed tables, side by side with
(a) the ceiling, a plain batched upsert of the same rows (no Kafka, no projection logic), and
(b) a naive projector that commits one transaction per event. Resident memory is sampled while
the projector runs. Prints a table, then one JSON line of figures.
"""

from __future__ import annotations

import itertools
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psutil
import psycopg
from confluent_kafka import Producer
from psycopg import sql
from psycopg.types.json import Jsonb

from hwledger.deploy.bench.fleet import history
from hwledger.deploy.kafka_admin import ensure_topic
from hwledger.projectors.checksums import table_checksums
from hwledger.projectors.config import ProjectorConfig
from hwledger.projectors.plan import Plan, Record, State, decode_all
from hwledger.projectors.projection import project
from hwledger.projectors.replicas import start_replicas, stop_replicas
from hwledger.projectors.statements import APPLIED, copy_rows
from hwledger.projectors.writer import Writer
from hwledger.schemas import codec
from hwledger.schemas.db import connect
from hwledger.schemas.events import EventData
from hwledger.schemas.migrations import drop_schema, prepare_schema

SNAPSHOT_WEIGHT = 0.8
FAST_GROUP = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500}


@dataclass(frozen=True)
class BenchConfig:
    database_url: str
    kafka: dict[str, Any]
    snapshots: int
    batch_size: int
    naive_seconds: float
    processes: int = 2
    providers: int = 2000
    seed: int = 42


@dataclass(frozen=True)
class Run:
    """One measured projection: events committed over seconds, per-second rates, memory."""

    events: int
    seconds: float
    window_rates: list[float]
    rss_mb: list[float]

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def events_for(config: BenchConfig) -> Iterator[EventData]:
    total = int(config.snapshots / SNAPSHOT_WEIGHT)
    return history(config.seed, config.providers, total, nodes_per_provider=4,
                   snapshot_weight=SNAPSHOT_WEIGHT)


def create_schema(database_url: str) -> str:
    """A fresh migrated and seeded schema for one measured run."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    prepare_schema(database_url, schema)
    return schema


def publish_all(config: BenchConfig, topic: str) -> tuple[int, int]:
    """Stream the history into `topic`; returns (events, snapshots)."""
    producer = Producer({**config.kafka, "linger.ms": 50, "enable.idempotence": True})
    events = snapshots = 0
    for kind, data in events_for(config):
        value = codec.encode(kind, data)
        while True:
            try:
                producer.produce(topic, value, key=str(data["provider_id"]))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        events += 1
        snapshots += kind == "HardwareSnapshotted"
    producer.flush(120)
    return events, snapshots


def _stored(conn: Any, topic: str) -> int:
    row = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM projection_offsets "
                       "WHERE topic = %s", (topic,)).fetchone()
    conn.commit()
    return int(row[0])


def measure(config: BenchConfig, topic: str, schema: str, total: int, batch_size: int,
            budget: float | None, processes: int = 1) -> Run:
    """Run `processes` projector processes (one consumer group, started together so the group
    forms once) from the first commit until `total` or `budget` seconds; memory is the sum of
    their resident sets."""
    replicas = start_replicas([ProjectorConfig(
        database_url=config.database_url, schema=schema, topic=topic,
        kafka={**config.kafka, **FAST_GROUP}, group_id=f"bench-{schema}",
        batch_size=batch_size, park_ttl=timedelta(hours=6))] * processes)
    tracked = [psutil.Process(r.pid) for r in replicas]
    rates, rss = [], []
    try:
        with connect(config.database_url, schema) as conn:
            first = 0
            while first == 0:
                time.sleep(0.05)
                first = _stored(conn, topic)
            started = last_time = time.monotonic()
            last = done = first
            while done < total and (budget is None or time.monotonic() - started < budget):
                time.sleep(1.0)
                done, now = _stored(conn, topic), time.monotonic()
                rates.append((done - last) / (now - last_time))
                rss.append(sum(p.memory_info().rss for p in tracked) / 2**20)
                last, last_time = done, now
            elapsed = time.monotonic() - started
    finally:
        stop_replicas(replicas)
    return Run(done - first, elapsed, rates, rss)


@dataclass(frozen=True)
class Ceiling:
    """Seconds spent on plain writes: the normalized rows, then applied_events and the
    provider_inventory and provider_nodes rows (the remaining rows a projector commits)."""

    events: int
    normalized_seconds: float
    bookkeeping_seconds: float

    def rate(self, *, with_bookkeeping: bool) -> float:
        spent = self.normalized_seconds + (self.bookkeeping_seconds if with_bookkeeping else 0)
        return self.events / spent if spent > 0 else 0.0


INVENTORY_TABLES = ("provider_inventory", "provider_nodes")
JSONB_OID = psycopg.postgres.types["jsonb"].oid


def inventory_rows(oracle: Writer, plan: Plan) -> dict[str, list[tuple[Any, ...]]]:
    """The provider_inventory and provider_nodes rows the projector's statements make of
    `plan` (in `oracle`), per table."""
    oracle.write_inventory(plan, oracle.write_rows(plan))
    rows = {}
    for table in INVENTORY_TABLES:
        cursor = oracle.conn.execute(sql.SQL(
            "SELECT * FROM {} WHERE provider_id = ANY(%s) ORDER BY provider_id").format(
                sql.Identifier(table)), (sorted(plan.touched),))
        jsonb = [c.type_code == JSONB_OID for c in cursor.description or ()]
        rows[table] = [tuple(Jsonb(v) if is_json else v for v, is_json in zip(row, jsonb,
                                                                             strict=True))
                       for row in cursor]
    oracle.conn.commit()
    oracle.remember(plan)
    return rows


def upsert_plainly(conn: psycopg.Connection[Any], table: str,
                   rows: list[tuple[Any, ...]]) -> None:
    """COPY rows into a staging copy of `table`, then one INSERT ... ON CONFLICT DO UPDATE."""
    columns = [c.name for c in conn.execute(
        sql.SQL("SELECT * FROM {} LIMIT 0").format(sql.Identifier(table))).description or ()]
    stage = sql.Identifier(f"stage_{table}")
    conn.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) "
                         "ON COMMIT DELETE ROWS").format(stage, sql.Identifier(table)))
    with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} FROM STDIN").format(stage)) as copy:
        for row in rows:
            copy.write_row(row)
    updates = sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c))
                                 for c in columns[1:])
    conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {} ON CONFLICT ({}) DO UPDATE SET {}")
                 .format(sql.Identifier(table), stage, sql.Identifier(columns[0]), updates))


def ceiling(config: BenchConfig, schema: str, oracle_schema: str) -> Ceiling:
    """The same rows written by plain batched COPY/upserts; only the writes are timed.

    No projection logic is timed: the plan is computed first, and the provider_inventory and
    provider_nodes rows the projector would write are computed beforehand in `oracle_schema` by
    its own statements.
    """
    state = State()
    normalized = bookkeeping = 0.0
    written = 0
    with connect(config.database_url, schema) as conn, \
            connect(config.database_url, oracle_schema) as oracle_conn:
        writer = Writer(conn, timedelta(hours=6))
        oracle = Writer(oracle_conn, timedelta(hours=6))
        events = events_for(config)
        while True:
            batch = [Record("bench", 0, written + i, codec.encode(kind, data))
                     for i, (kind, data) in enumerate(itertools.islice(events,
                                                                       config.batch_size))]
            if not batch:
                break
            plan = project(decode_all(batch), state, timedelta(hours=6))
            inventory = inventory_rows(oracle, plan)
            started = time.monotonic()
            writer.write_rows(plan)
            conn.commit()
            middle = time.monotonic()
            copy_rows(conn, "applied_events", APPLIED, plan.applied)
            for table, rows in inventory.items():
                upsert_plainly(conn, table, rows)
            conn.commit()
            normalized += middle - started
            bookkeeping += time.monotonic() - middle
            writer.remember(plan)
            written += len(batch)
    return Ceiling(written, normalized, bookkeeping)


def checksums(database_url: str, schema: str) -> dict[str, tuple[int, str]]:
    with connect(database_url, schema) as conn:
        return table_checksums(conn)


def run_benchmark(config: BenchConfig) -> dict[str, Any]:
    topic = f"hwledger.bench.{uuid.uuid4().hex[:8]}"
    ensure_topic(config.kafka, topic, 6)
    print(f"publishing ~{config.snapshots:,} snapshots plus runs to {topic} ...", flush=True)
    total, snapshots = publish_all(config, topic)
    schemas = [create_schema(config.database_url) for _ in range(5)]
    try:
        print(f"projecting {total:,} events ({snapshots:,} HardwareSnapshotted), "
              "one process ...", flush=True)
        single = measure(config, topic, schemas[0], total, config.batch_size, None)
        print(f"the same with {config.processes} processes ...", flush=True)
        fast = measure(config, topic, schemas[3], total, config.batch_size, None,
                       config.processes)
        print(f"naive projector for {config.naive_seconds:g}s ...", flush=True)
        naive = measure(config, topic, schemas[1], total, 1, config.naive_seconds)
        print("ceiling: plain batched upserts of the same rows ...", flush=True)
        top = ceiling(config, schemas[2], schemas[4])
        same_rows = checksums(config.database_url, schemas[2]) == checksums(
            config.database_url, schemas[0])
    finally:
        for schema in schemas:
            drop_schema(config.database_url, schema)
    quarter = fast.rss_mb[len(fast.rss_mb) // 4] if fast.rss_mb else 0.0
    figures = {
        "events": total, "snapshots": snapshots, "batch_size": config.batch_size,
        "processes": config.processes,
        "projector_events_per_s": round(fast.rate, 1),
        "one_process_events_per_s": round(single.rate, 1),
        "projector_median_window_events_per_s": round(statistics.median(fast.window_rates), 1)
        if fast.window_rates else 0.0,
        "ceiling_events_per_s": round(top.rate(with_bookkeeping=True), 1),
        "ceiling_normalized_only_events_per_s": round(top.rate(with_bookkeeping=False), 1),
        "naive_events_per_s": round(naive.rate, 1),
        "naive_median_window_events_per_s": round(statistics.median(naive.window_rates), 1)
        if naive.window_rates else 0.0,
        "ratio_to_ceiling": round(fast.rate / top.rate(with_bookkeeping=True), 3)
        if top.events else 0.0,
        "ceiling_rows_equal_projector": same_rows,
        "ratio_to_normalized_only_ceiling": round(
            fast.rate / top.rate(with_bookkeeping=False), 3) if top.events else 0.0,
        "speedup_vs_naive": round(fast.rate / naive.rate, 1) if naive.rate else 0.0,
        "rss_mb_at_25pct": round(quarter, 1),
        "rss_mb_at_end": round(fast.rss_mb[-1], 1) if fast.rss_mb else 0.0,
        "rss_mb_max": round(max(fast.rss_mb), 1) if fast.rss_mb else 0.0,
    }
    return figures
