"""Verify: are two read-model schemas equal? Per-table checksums and a readable diff.

Checksums come from `checksums.table_checksums` (order-independent over the read-model
tables). Dead letters are compared by their log position, reason and raw bytes (their ids are
local to each schema). For a table that differs, up to `limit` rows found on only one side are
shown, over the columns both schemas have.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from hwledger.projectors.checksums import (
    READ_MODEL_TABLES,
    pruned_before,
    rows_checksum,
    table_checksums,
)
from hwledger.schemas.db import connect, use_schema

DEAD_LETTER_COLUMNS = ("topic", "partition", "offset", "reason", "raw")


@dataclass(frozen=True)
class TableDiff:
    """One table compared across schemas `a` and `b`."""

    table: str
    rows_a: int
    rows_b: int
    equal: bool
    only_in_a: tuple[str, ...] = ()
    only_in_b: tuple[str, ...] = ()


def _columns(conn: psycopg.Connection[Any], schema: str, table: str) -> list[str]:
    rows = conn.execute("SELECT column_name FROM information_schema.columns WHERE "
                        "table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                        (schema, table)).fetchall()
    return [str(r[0]) for r in rows]


def _only_in(conn: psycopg.Connection[Any], first: str, second: str, table: str,
             columns: list[str], limit: int) -> tuple[str, ...]:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    query = sql.SQL("SELECT ({cols})::text FROM (SELECT {cols} FROM {a}.{t} EXCEPT ALL "
                    "SELECT {cols} FROM {b}.{t}) d ORDER BY 1 LIMIT {n}").format(
        cols=cols, a=sql.Identifier(first), b=sql.Identifier(second), t=sql.Identifier(table),
        n=sql.Literal(limit))
    return tuple(str(r[0]) for r in conn.execute(query).fetchall())


def _dead_letters(conn: psycopg.Connection[Any], schema: str) -> tuple[int, str]:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in DEAD_LETTER_COLUMNS)
    return rows_checksum(conn, sql.SQL("SELECT {cols} FROM {s}.dead_letters").format(
        cols=cols, s=sql.Identifier(schema)))


def _checksums(conn: psycopg.Connection[Any], schema: str, applied_since: datetime | None
               ) -> dict[str, tuple[int, str]]:
    use_schema(conn, schema)
    return (table_checksums(conn, applied_since)
            | {"dead_letters": _dead_letters(conn, schema)})


def _applied_since(conn: psycopg.Connection[Any], schemas: tuple[str, str]) -> datetime | None:
    """The later applied_events prune horizon of the two schemas (None: neither pruned)."""
    horizons = []
    for schema in schemas:
        use_schema(conn, schema)
        horizons.append(pruned_before(conn, "applied_events"))
    found = [h for h in horizons if h is not None]
    return max(found) if found else None


def compare(database_url: str, a: str, b: str, limit: int = 5) -> list[TableDiff]:
    """Every read-model table (and the dead letters) of schemas `a` and `b`, compared;
    applied_events over the rows both keep (after the later of their prune horizons)."""
    with connect(database_url, None) as conn:
        since = _applied_since(conn, (a, b))
        left, right = _checksums(conn, a, since), _checksums(conn, b, since)
        found = []
        for table in (*READ_MODEL_TABLES, "dead_letters"):
            equal = left[table] == right[table]
            only_a: tuple[str, ...] = ()
            only_b: tuple[str, ...] = ()
            if not equal:
                columns = (list(DEAD_LETTER_COLUMNS) if table == "dead_letters" else
                           [c for c in _columns(conn, a, table)
                            if c in _columns(conn, b, table)])
                only_a = _only_in(conn, a, b, table, columns, limit)
                only_b = _only_in(conn, b, a, table, columns, limit)
            found.append(TableDiff(table, left[table][0], right[table][0], equal,
                                   only_a, only_b))
        conn.rollback()
    return found
