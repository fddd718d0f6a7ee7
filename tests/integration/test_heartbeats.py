"""NodeHeartbeated through the writer (liveness, HOT updates, parking, replay) and applied_events
retention (`hwledger db prune`): pruning keeps the read model, and verify still agrees with a
schema that never pruned."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hwledger.projectors.plan import Record
from hwledger.projectors.retention import prune_applied_events
from hwledger.projectors.verify import compare
from hwledger.projectors.writer import Writer
from hwledger.schemas import codec
from hwledger.schemas.db import connect
from hwledger.schemas.events import EventData
from tests import cli
from tests import factories as f
from tests.integration.projector_support import checksums, fresh_schema


class Log:
    """Applies events through a fenced writer at consecutive offsets of one partition."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.writer = Writer(conn, timedelta(hours=6))
        self.offset = 0

    def apply(self, *events: EventData) -> None:
        records = [Record("t", 0, self.offset + i, codec.encode(kind, data))
                   for i, (kind, data) in enumerate(events)]
        expected = self.offset or None
        self.offset += len(records)
        self.writer.apply(records, {("t", 0): (expected, self.offset)})


def _one(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    conn.commit()
    assert row is not None
    return row[0] if len(row) == 1 else tuple(row)


def test_heartbeats_move_liveness_as_hot_updates_and_add_no_rows(database_url: str) -> None:
    with fresh_schema(database_url) as schema, connect(database_url, schema) as conn:
        log = Log(conn)
        snapshot = f.snapshot(minutes=0)
        log.apply(("HardwareSnapshotted", snapshot))
        for beat in range(1, 6):
            log.apply(("NodeHeartbeated", f.heartbeat(snapshot, minutes=5 * beat)))
        log.apply(("NodeHeartbeated", f.heartbeat(snapshot, minutes=1)))  # late: moves nothing
        assert _one(conn, "SELECT last_seen_at FROM provider_inventory") == f.at(25)
        assert _one(conn, "SELECT last_seen_at, current_snapshot_event_id::text FROM nodes") == (
            f.at(25), snapshot["event_id"])
        assert _one(conn, "SELECT count(*) FROM applied_events") == 1
        assert _one(conn, "SELECT count(*) FROM hardware_snapshots") == 1
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.commit()
        with connect(database_url, schema) as reader:
            counts = dict(reader.execute(
                "SELECT relname, (n_tup_upd, n_tup_hot_upd)::text FROM pg_stat_user_tables "
                "WHERE schemaname = %s AND relname IN ('nodes', 'provider_inventory')",
                (schema,)).fetchall())
        assert counts == {"nodes": "(5,5)", "provider_inventory": "(5,5)"}


def test_a_heartbeat_before_its_snapshot_waits_parked(database_url: str) -> None:
    with fresh_schema(database_url) as schema, connect(database_url, schema) as conn:
        log = Log(conn)
        snapshot = f.snapshot(minutes=0)
        log.apply(("NodeHeartbeated", f.heartbeat(snapshot, minutes=5)))
        assert _one(conn, "SELECT waiting_for FROM parked_events") == (
            f"snapshot {snapshot['event_id']}")
        assert _one(conn, "SELECT count(*) FROM nodes") == 0
        log.apply(("HardwareSnapshotted", snapshot))
        assert _one(conn, "SELECT count(*) FROM parked_events") == 0
        assert _one(conn, "SELECT last_seen_at FROM nodes") == f.at(5)
        assert _one(conn, "SELECT last_seen_at FROM provider_inventory") == f.at(5)


def _history() -> list[EventData]:
    """Ten days of one provider: a snapshot, heartbeats, a run, a new snapshot a day."""
    events: list[EventData] = [("ProviderRegistered", f.provider_registered(minutes=0))]
    for day in range(10):
        start = day * 1440.0
        snapshot = f.snapshot(minutes=start, seed=f"snap-{day}")
        started = f.run_started(snapshot, f"run-{day}", minutes=start + 2, seed=f"start-{day}")
        events += [("HardwareSnapshotted", snapshot),
                   ("NodeHeartbeated", f.heartbeat(snapshot, minutes=start + 1,
                                                   seed=f"beat-{day}")),
                   ("RunStarted", started),
                   ("RunFinished", f.run_finished(started, minutes=start + 3,
                                                  seed=f"finish-{day}"))]
    return events


def test_replays_in_other_batches_give_the_same_tables(database_url: str) -> None:
    history = _history()
    with fresh_schema(database_url) as one, fresh_schema(database_url) as each:
        with connect(database_url, one) as conn:
            Log(conn).apply(*history)
        with connect(database_url, each) as conn:
            log = Log(conn)
            for event in reversed(history):  # heartbeats and runs before their snapshots
                log.apply(event)
        assert checksums(database_url, one) == checksums(database_url, each)


def test_pruning_keeps_the_read_model_and_verify_agrees(database_url: str) -> None:
    history = _history()
    now = datetime.now(UTC)
    with fresh_schema(database_url) as pruned, fresh_schema(database_url) as kept:
        for schema in (pruned, kept):
            with connect(database_url, schema) as conn:
                Log(conn).apply(*history)
        with connect(database_url, pruned) as conn:
            before = checksums(database_url, pruned)
            done = prune_applied_events(conn, timedelta(days=3), now)
            assert done.horizon == f.at(9 * 1440 + 3) - timedelta(days=3)
            oldest = _one(conn, "SELECT min(occurred_at) FROM applied_events")
            assert oldest >= done.horizon and done.deleted == 1 + 6 * 3 + 2
            after = checksums(database_url, pruned)
            assert {k for k in before if before[k] != after[k]} == {"applied_events"}
            # the pruned events published again, at new offsets: no row changes, no dead letter
            log = Log(conn)
            log.offset = len(history)
            log.apply(*history[:13])
            assert _one(conn, "SELECT count(*) FROM dead_letters") == 0
        with connect(database_url, kept) as conn:
            log = Log(conn)
            log.offset = len(history)
            log.apply(*history[:13])
        diffs = compare(database_url, pruned, kept)
        assert [d.table for d in diffs if not d.equal] == []
        assert next(d for d in diffs if d.table == "applied_events").rows_a < len(history)


@pytest.mark.slow
def test_db_prune_prints_one_line_per_schema(database_url: str, tmp_path: Path) -> None:
    with fresh_schema(database_url) as schema:
        with connect(database_url, schema) as conn:
            Log(conn).apply(*_history())
        result = cli.run(["db", "prune", "--window-days", "3"], tmp_path,
                         HWLEDGER_DATABASE_URL=database_url, HWLEDGER_DB_SCHEMA=schema)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"schema {schema!r}: pruned 21 applied_events rows "
                                        "older than 2026-11-07T12:03:00+00:00 (window 3 days)")
        refused = cli.run(["db", "prune", "--window-days", "-1"], tmp_path,
                          HWLEDGER_DATABASE_URL=database_url, HWLEDGER_DB_SCHEMA=schema)
        assert refused.returncode == 2 and "--window-days: -1.0 must be positive" in refused.stderr


@pytest.mark.slow
def test_bench_heartbeat_day_at_a_tiny_size(database_url: str, tmp_path: Path) -> None:
    result = cli.run(["bench", "heartbeat-day", "--sample", "4", "--periods", "6"], tmp_path,
                     HWLEDGER_DATABASE_URL=database_url)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert (found["benchmark"], found["measured_periods"], found["scale"]) == (
        "heartbeat-day", 5, 100_000 / 4 * 288 / 5)
    assert 0 < found["after_wal_bytes_per_event"] < found["before_wal_bytes_per_event"]
    assert found["before_hardware_snapshots_growth_mb_per_day"] > 0
    assert found["after_hardware_snapshots_growth_mb_per_day"] == 0
    assert found["after_provider_inventory_hot_ratio"] == 1.0
    assert found["before_provider_inventory_hot_ratio"] == 0.0  # the last_seen_at btree
    with connect(database_url, None) as conn:
        left = conn.execute("SELECT count(*) FROM pg_namespace "
                            "WHERE nspname LIKE 'bench_hb_%'").fetchone()
    assert left == (0,)
