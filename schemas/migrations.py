"""Ordered SQL migrations of the read model, applied into one Postgres schema.

Files `schemas/sql/NNNN_name.sql` are applied in order inside one transaction each and recorded
in that schema's `schema_migrations` table, so `hwledger db migrate` is idempotent. A database
already at a newer version than this code knows is refused with a clear error, and the
commands that read or write a schema refuse one behind the newest file (`require_current`).
The read-model schemas are `hwledger` and the rebuilds' `hwledger_v<N>`; the
`hwledger_meta.active_schema` row tells the query service which schema is live;
`hwledger_meta.deferred_inventory` lists schemas being rebuilt whose provider_inventory is
built once at the end (projectors/rebuild.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from hwledger.schemas.db import DEFAULT_SCHEMA, check_schema_name, connect, use_schema
from hwledger.schemas.errors import ConfigError, UserError
from hwledger.seeds.seeding import seed_database

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x68776C6467  # "hwldg": serializes concurrent migrators
SCHEMA_PREFIX = "hwledger_v"
VERSIONED_SCHEMA = re.compile(rf"^{SCHEMA_PREFIX}(\d+)$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """All shipped migrations in version order."""
    found = []
    for entry in resources.files("hwledger.schemas").joinpath("sql").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match["version"]), match["name"],
                                   entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


def newest_version() -> int:
    """The version of the newest shipped migration file (0 when there is none)."""
    known = migrations()
    return known[-1].version if known else 0


def ensure_meta(conn: psycopg.Connection[Any]) -> None:
    """Create the `hwledger_meta` schema and its tables when missing."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS hwledger_meta")
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS hwledger_meta.active_schema (
            singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            schema_name  text NOT NULL,
            switched_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    conn.execute(
        "INSERT INTO hwledger_meta.active_schema (schema_name) VALUES (%s) "
        "ON CONFLICT DO NOTHING", (DEFAULT_SCHEMA,))
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS hwledger_meta.deferred_inventory (
            schema_name  text PRIMARY KEY,
            since        timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def active_schema(conn: psycopg.Connection[Any]) -> str:
    """The schema the query service reads; `hwledger` when nothing has been switched."""
    try:
        row = conn.execute("SELECT schema_name FROM hwledger_meta.active_schema").fetchone()
    except psycopg.errors.UndefinedTable:
        conn.rollback()
        return DEFAULT_SCHEMA
    if row is None:
        return DEFAULT_SCHEMA
    return str(row[0])


def current_version(conn: psycopg.Connection[Any], schema: str) -> int:
    """The highest migration applied in `schema`, 0 when none."""
    exists = conn.execute("SELECT to_regclass(%s)",
                          (f"{check_schema_name(schema)}.schema_migrations",)).fetchone()
    if not exists or exists[0] is None:
        return 0
    row = conn.execute(sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_migrations")
                       .format(sql.Identifier(schema))).fetchone()
    return int(row[0]) if row else 0


def hwledger_schemas(conn: psycopg.Connection[Any]) -> list[str]:
    """The live-or-rebuilt read-model schemas: `hwledger` and `hwledger_v<N>` that exist."""
    rows = conn.execute("SELECT table_schema FROM information_schema.tables "
                        "WHERE table_name = 'schema_migrations' ORDER BY 1").fetchall()
    return [str(r[0]) for r in rows
            if r[0] == DEFAULT_SCHEMA or VERSIONED_SCHEMA.match(str(r[0]))]


def read_model_schemas(conn: psycopg.Connection[Any]) -> list[str]:
    """The schemas `hwledger db migrate` and `db seed` bring up to date: the active one
    (which `migrate` creates when missing) and every other read-model schema still present."""
    live = active_schema(conn)
    return [live, *(s for s in hwledger_schemas(conn) if s != live)]


def require_current(conn: psycopg.Connection[Any], schema: str) -> None:
    """Refuse (ConfigError) a schema whose applied migrations are behind the newest file."""
    have, newest = current_version(conn, schema), newest_version()
    if have < newest:
        state = "has no hwledger tables" if have == 0 else f"is at migration {have}"
        raise ConfigError(f"schema {schema!r} {state}, this hwledger needs migration {newest}: "
                          "run `hwledger db migrate` first")


def migrated_schema(database_url: str, schema: str | None = None) -> str:
    """`schema` (default: the active one) after `require_current`."""
    with connect(database_url, None) as conn:
        found = schema or active_schema(conn)
        require_current(conn, found)
    return found


def migrate(conn: psycopg.Connection[Any], schema: str = DEFAULT_SCHEMA,
            target: int | None = None) -> list[Migration]:
    """Apply pending migrations to `schema`, up to version `target` (default: the newest);
    returns those applied (empty when up to date)."""
    check_schema_name(schema)
    known = migrations()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        ensure_meta(conn)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.schema_migrations ("
            "version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())").format(sql.Identifier(schema)))
        have = current_version(conn, schema)
        newest = newest_version()
        if have > newest:
            raise UserError(
                f"database schema {schema!r} is at migration {have}, newer than this hwledger "
                f"knows ({newest}); upgrade hwledger instead of migrating down"
            )
        use_schema(conn, schema)
        applied = []
        for migration in known:
            if migration.version <= have or (target is not None and migration.version > target):
                continue
            conn.execute(migration.sql.encode())
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                         (migration.version, migration.name))
            applied.append(migration)
    return applied


def prepare_schema(database_url: str, schema: str = DEFAULT_SCHEMA) -> tuple[int, int]:
    """Migrate and seed `schema` (created when missing); returns (migrations, seed rows) changed."""
    with connect(database_url, None) as conn:
        applied = migrate(conn, schema)
        use_schema(conn, schema)
        changed = seed_database(conn)
        conn.commit()
    return len(applied), changed


def drop_schema(database_url: str, schema: str) -> None:
    """Drop a schema and everything in it."""
    with connect(database_url, None, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(
            sql.Identifier(check_schema_name(schema))))


@contextmanager
def scratch_schema(database_url: str, prefix: str = "scratch") -> Iterator[str]:
    """A fresh migrated and seeded schema with a random name, dropped afterwards."""
    schema = check_schema_name(f"{prefix}_{uuid.uuid4().hex[:12]}")
    prepare_schema(database_url, schema)
    try:
        yield schema
    finally:
        drop_schema(database_url, schema)
