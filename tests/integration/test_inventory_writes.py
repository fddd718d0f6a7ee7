"""provider_inventory writes: an unchanged row is not rewritten, and a heartbeat (a snapshot of
unchanged hardware, only last_seen_at moves) is a HOT update."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg

from hwledger.projectors.plan import Record
from hwledger.projectors.writer import Writer
from hwledger.schemas import codec
from hwledger.schemas.db import connect
from tests import factories as f
from tests.integration.projector_support import fresh_schema


def _apply(writer: Writer, offset: int, kind: str, data: dict[str, Any]) -> None:
    writer.apply([Record("t", 0, offset, codec.encode(kind, data))], {})


def _row_version(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    row = conn.execute("SELECT xmin::text, last_seen_at FROM provider_inventory").fetchone()
    conn.commit()
    assert row is not None
    return tuple(row)


def test_an_unchanged_inventory_row_is_not_rewritten(database_url: str) -> None:
    with fresh_schema(database_url) as schema, connect(database_url, schema) as conn:
        writer = Writer(conn, timedelta(hours=6))
        _apply(writer, 0, "HardwareSnapshotted", f.snapshot(minutes=5))
        before = _row_version(conn)
        _apply(writer, 1, "ProviderAudited", f.provider_audited(minutes=9, attributes={}))
        assert _row_version(conn) == before


def test_a_heartbeat_is_a_hot_update(database_url: str) -> None:
    with fresh_schema(database_url) as schema, connect(database_url, schema) as conn:
        writer = Writer(conn, timedelta(hours=6))
        snapshot = f.snapshot(minutes=0)
        _apply(writer, 0, "HardwareSnapshotted", snapshot)
        for beat in range(1, 6):
            _apply(writer, beat, "HardwareSnapshotted",
                   {**snapshot, "event_id": f.event_id(f"beat{beat}"), "occurred_at": f.at(beat)})
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.commit()
        with connect(database_url, schema) as reader:
            counts = reader.execute(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                "WHERE schemaname = %s AND relname = 'provider_inventory'", (schema,)).fetchone()
        assert counts == (5, 5)
