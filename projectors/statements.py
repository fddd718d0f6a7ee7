"""The writer's bulk statements: each written table's columns (from its row type in `rows`),
the upserts that keep rows independent of arrival order (`merge_upsert`, `UPSERTS`), and the
two ways rows travel: one `unnest` INSERT per table (`bulk_insert`) or COPY (`copy_rows`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from hwledger.projectors.rows import (
    MERGE_ORDER,
    AppliedEvent,
    GpuHardware,
    HardwareSnapshot,
    Provider,
    ProviderAudit,
    Run,
    RunGpuUsage,
    RunHardwareMetrics,
    SystemGpuLink,
    SystemHardware,
    SystemSoftware,
)
from hwledger.schemas import tables

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Column:
    name: str
    type: str


def _cols(table: str, names: Sequence[str] | None = None) -> tuple[Column, ...]:
    """The columns the writer inserts into `table`, in the order of `names` (a row type's
    fields; by default the table's own order), typed from the one table metadata."""
    found = tables.metadata.tables[table]
    if names is None:
        names = [c.name for c in tables.inserted_columns(found)]
    return tuple(Column(name, tables.sql_type(found.c[name])) for name in names)


GPU_HARDWARE = _cols("gpu_hardware", GpuHardware._fields)


SYSTEM_HARDWARE = _cols("system_hardware", SystemHardware._fields)


SYSTEM_GPU_LINK = _cols("system_gpu_link", SystemGpuLink._fields)


SYSTEM_SOFTWARE = _cols("system_software", SystemSoftware._fields)


SNAPSHOTS = _cols("hardware_snapshots", HardwareSnapshot._fields)


NODES = _cols("nodes")


RUNS = _cols("runs", Run._fields)


RUN_GPU_USAGE = _cols("run_gpu_usage", RunGpuUsage._fields)


RUN_METRICS = _cols("run_hardware_metrics", RunHardwareMetrics._fields)


PROVIDERS = _cols("providers", Provider._fields)


AUDITS = _cols("provider_audits", ProviderAudit._fields)


APPLIED = _cols("applied_events", AppliedEvent._fields)


DEAD_LETTERS = _cols("dead_letters")


PARKED = _cols("parked_events")


def _merge_value(table: str, name: str, side: str) -> str:
    """One merge column of `side` (`excluded` or the table) as MERGE_ORDER compares it."""
    column = tables.metadata.tables[table].c[name]
    value = f"{side}.{name}"
    if tables.sql_type(column) != "text":
        return value
    return (f"coalesce({value}, '')" if column.nullable else value) + ' COLLATE "C"'


def merge_upsert(table: str) -> str:
    """ON CONFLICT tail of a content-addressed table with `MERGE_ORDER` columns: the stored row
    is replaced only by one whose merge columns are less (C collation, as Python compares)."""
    columns = tables.inserted_columns(tables.metadata.tables[table])

    def merged(side: str) -> str:
        return "(" + ", ".join(_merge_value(table, n, side) for n in MERGE_ORDER[table]) + ")"

    updates = ", ".join(f"{c.name} = excluded.{c.name}" for c in columns[1:])
    return (f"ON CONFLICT ({columns[0].name}) DO UPDATE SET {updates} "
            f"WHERE {merged('excluded')} < {merged(table)}")


NEWER = "(excluded.{at}, excluded.event_id) > ({t}.{at}, {t}.event_id)"


UPSERTS = {
    "gpu_hardware": merge_upsert("gpu_hardware"),
    "system_hardware": merge_upsert("system_hardware"),
    "nodes": """ON CONFLICT (provider_id, node_id) DO UPDATE SET
        current_snapshot_event_id = CASE WHEN (excluded.current_occurred_at,
            excluded.current_snapshot_event_id) > (nodes.current_occurred_at,
            nodes.current_snapshot_event_id) THEN excluded.current_snapshot_event_id
            ELSE nodes.current_snapshot_event_id END,
        current_occurred_at = greatest(nodes.current_occurred_at, excluded.current_occurred_at),
        first_seen_at = least(nodes.first_seen_at, excluded.first_seen_at),
        last_seen_at = greatest(nodes.last_seen_at, excluded.last_seen_at)""",
    "providers": "ON CONFLICT (provider_id) DO UPDATE SET host_uri = excluded.host_uri, "
                 "attributes = excluded.attributes, registered_at = excluded.registered_at, "
                 "event_id = excluded.event_id, "
                 "leased_ip_capacity = excluded.leased_ip_capacity, "
                 "reclamation_window = excluded.reclamation_window WHERE "
                 + NEWER.format(at="registered_at", t="providers"),
    "provider_audits": "ON CONFLICT (provider_id, auditor) DO UPDATE SET "
                       "attributes = excluded.attributes, audited_at = excluded.audited_at, "
                       "event_id = excluded.event_id WHERE "
                       + NEWER.format(at="audited_at", t="provider_audits"),
}


def changed_rows_upsert(alias: str, key: str, updates: Mapping[str, str]) -> str:
    """ON CONFLICT tail that sets `updates` (column -> new value) only where a value changes:
    an unchanged row is not rewritten (no dead tuple, no WAL, no index entries)."""
    assignments = ", ".join(f"{name} = {value}" for name, value in updates.items())
    old = ", ".join(f"{alias}.{name}" for name in updates)
    return (f"ON CONFLICT ({key}) DO UPDATE SET {assignments} "
            f"WHERE ({old}) IS DISTINCT FROM ({', '.join(updates.values())})")


def _bulk(conn: psycopg.Connection[Any], table: str, columns: Sequence[Column],
          rows: Sequence[Row], tail: str) -> psycopg.Cursor[Any] | None:
    """INSERT ... SELECT FROM unnest(one array per column) [tail]; None without rows."""
    if not rows:
        return None
    names = sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
    arrays = sql.SQL(", ").join(
        sql.SQL("%b::{}[]").format(sql.SQL("text" if c.type == "jsonb" else c.type))
        for c in columns)
    selected = sql.SQL(", ").join(
        sql.SQL("u.{}::jsonb" if c.type == "jsonb" else "u.{}").format(sql.Identifier(c.name))
        for c in columns)
    query = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS u({}) {}").format(
        sql.Identifier(table), names, selected, arrays, names, sql.SQL(tail))
    return conn.execute(query, [list(col) for col in zip(*rows, strict=True)])


def bulk_insert(conn: psycopg.Connection[Any], table: str, columns: Sequence[Column],
                rows: Sequence[Row], tail: str = "ON CONFLICT DO NOTHING") -> int:
    """INSERT ... SELECT FROM unnest(one array per column) [tail]; returns the rows written."""
    cur = _bulk(conn, table, columns, rows, tail)
    return 0 if cur is None else cur.rowcount


def bulk_replace(conn: psycopg.Connection[Any], table: str, columns: Sequence[Column],
                 rows: Sequence[Row], tail: str) -> list[str]:
    """`bulk_insert` with an upsert `tail`: the ids (first column) of the stored rows it
    replaced, not of those it inserted (a row an upsert updated has a non-zero xmax)."""
    cur = _bulk(conn, table, columns, rows,
                f"{tail} RETURNING {columns[0].name}::text, xmax::text::bigint <> 0")
    return [] if cur is None else [key for key, replaced in cur.fetchall() if replaced]


def copy_rows(conn: psycopg.Connection[Any], table: str, columns: Sequence[Column],
              rows: Sequence[Row]) -> None:
    """COPY rows into an append-only table (about 4x faster than INSERT for large batches).

    Only for rows the projection has already deduplicated: a conflict aborts the batch.
    """
    if not rows:
        return
    query = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c.name) for c in columns))
    with conn.cursor() as cur, cur.copy(query) as copy:
        for row in rows:
            copy.write_row(row)
