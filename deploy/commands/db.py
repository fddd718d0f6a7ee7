"""`hwledger db migrate|seed`: bring the read-model schemas and the query role up to date.

Without HWLEDGER_DB_SCHEMA both reach the active schema (`hwledger_meta.active_schema`, created
when missing) and every other read-model schema still present (`hwledger`, `hwledger_v<N>`), so
a rebuild's switch never leaves the live schema behind; HWLEDGER_DB_SCHEMA names one schema.
`--to VERSION` stops early (the state an older hwledger left). `migrate` also makes the query
service's role read-only on each of them (schemas/roles.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import psycopg

from hwledger.deploy.commands import Subparsers, add_command, add_group
from hwledger.deploy.config import Settings
from hwledger.schemas.db import connect, use_schema
from hwledger.schemas.errors import UserError
from hwledger.schemas.migrations import migrate, read_model_schemas
from hwledger.schemas.roles import ensure_query_role
from hwledger.seeds import seed_database


def register(subparsers: Subparsers) -> None:
    db = add_group(subparsers, "db", "database migrations and seed data")
    migrate_command = add_command(db, "migrate", _migrate,
                                  "apply pending migrations to the active schema and every "
                                  "read-model schema present, and grant the query service's "
                                  "read-only role (idempotent)")
    migrate_command.add_argument("--to", type=int, metavar="VERSION",
                                 help="stop after this migration (default: the newest)")
    seed = add_command(db, "seed", _seed, "load seeds/interface_types.json into the same "
                                          "schemas (idempotent)")
    seed.add_argument("--file", type=Path, help="another interface_types.json to load")


def _schemas(conn: psycopg.Connection[Any], settings: Settings) -> list[str]:
    return [settings.db_schema] if settings.db_schema else read_model_schemas(conn)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url(), None) as conn:
        for schema in _schemas(conn, settings):
            try:
                applied = migrate(conn, schema, args.to)
            except psycopg.errors.InsufficientPrivilege as exc:
                raise UserError(f"cannot migrate schema {schema!r}: "
                                f"{str(exc).strip().splitlines()[0]}; run `hwledger db migrate` "
                                "as a role that may create tables in it") from None
            names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
            print(f"schema {schema!r}: applied {names}" if applied
                  else f"schema {schema!r} is up to date")
            print(ensure_query_role(conn, schema, settings.query_database_url))
    return 0


def _seed(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url(), None) as conn:
        for schema in _schemas(conn, settings):
            use_schema(conn, schema)
            changed = seed_database(conn, args.file)
            conn.commit()
            print(f"schema {schema!r}: seeded interface_type: {changed} rows changed")
    return 0
