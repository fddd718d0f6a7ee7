"""Per-table checksums of the read model: equal checksums mean equal table contents.

Used to prove convergence (replays, interleavings, crashes, rebalances) and to verify that a
rebuilt schema equals the live one. Bookkeeping that names log positions (offsets, dead
letters, parked events) is not part of the read model and is not checksummed. applied_events
is, up to its retention: two schemas are compared over the rows neither has pruned.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

READ_MODEL_TABLES = (
    "gpu_hardware", "system_hardware", "system_gpu_link", "system_software",
    "hardware_snapshots", "nodes", "runs", "run_gpu_usage", "run_hardware_metrics",
    "providers", "provider_audits", "provider_inventory", "provider_nodes",
    "applied_events",
)


ROW_HASHES = """
SELECT count(*),
       coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0)::text || ':' ||
       coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)::text
FROM (SELECT md5(r::text) AS h FROM ({rows}) r) hashed
"""
"""Count and checksum of a set of rows: each row's md5 split in two 64-bit halves, each half
summed exactly (numeric). A sum does not depend on row order and holds one value per row at a
time, so it scales to any table size; one text of every row (`md5(string_agg(...))`) stops at
PostgreSQL's 1 GB value limit, a few million rows."""


def rows_checksum(conn: psycopg.Connection[Any], rows: sql.Composable) -> tuple[int, str]:
    """(row count, checksum) of the rows the query `rows` selects (see ROW_HASHES)."""
    row = conn.execute(sql.SQL(ROW_HASHES).format(rows=rows)).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def table_checksum(conn: psycopg.Connection[Any], table: str) -> tuple[int, str]:
    """(row count, checksum) of one table of the current schema."""
    return rows_checksum(conn, sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))


def applied_checksum(conn: psycopg.Connection[Any], since: datetime | None = None
                     ) -> tuple[int, str]:
    """(row count, checksum) of applied_events by event id and type (a row applied before
    migration 0009 has no event time), with `since` only the rows a prune before it keeps."""
    kept = sql.SQL("") if since is None else sql.SQL(
        " WHERE occurred_at IS NULL OR occurred_at >= {}").format(sql.Literal(since))
    return rows_checksum(conn, sql.SQL("SELECT event_id, event_type FROM applied_events{}")
                         .format(kept))


def table_checksums(conn: psycopg.Connection[Any], applied_since: datetime | None = None
                    ) -> dict[str, tuple[int, str]]:
    """table -> (row count, checksum over its rows) in the current schema; applied_events by
    `applied_checksum` (from `applied_since` on, when given: see retention)."""
    found = {table: applied_checksum(conn, applied_since) if table == "applied_events"
             else table_checksum(conn, table) for table in READ_MODEL_TABLES}
    conn.commit()
    return found


def pruned_before(conn: psycopg.Connection[Any], table: str) -> datetime | None:
    """The event time before which the current schema's `table` was pruned, if it was."""
    row = conn.execute("SELECT pruned_before FROM retention_horizons WHERE table_name = %s",
                       (table,)).fetchone()
    conn.commit()
    return None if row is None else row[0]
