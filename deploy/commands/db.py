"""`hwledger db migrate|seed|prune`: bring the read-model schemas and the query role up to
date; drop applied_events rows older than the dedup window (projectors/retention.py).

Without HWLEDGER_DB_SCHEMA both reach the active schema (`hwledger_meta.active_schema`, created
when missing) and every other read-model schema still present (`hwledger`, `hwledger_v<N>`), so
a rebuild's switch never leaves the live schema behind; HWLEDGER_DB_SCHEMA names one schema.
`--to VERSION` stops early (the state an older hwledger left). `migrate` also makes the query
service's role read-only on each of them (schemas/roles.py).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from hwledger.deploy.commands import Subparsers, add_command, add_group, positive_number
from hwledger.deploy.config import Settings
from hwledger.projectors.retention import DEFAULT_WINDOW, prune_applied_events
from hwledger.schemas.db import connect, use_schema
from hwledger.schemas.errors import UserError
from hwledger.schemas.migrations import migrate, read_model_schemas, require_current
from hwledger.schemas.roles import ensure_query_role
from hwledger.seeds.seeding import seed_database


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
    seed.add_argument("--gpu-specs", type=Path, metavar="FILE",
                      help="another gpu_specs.json (the GPU spec catalog) to load")
    prune = add_command(db, "prune", _prune, "drop applied_events rows older than the dedup "
                                             "window of event time, in the same schemas "
                                             "(safe at any window: docs/operations.md)")
    prune.add_argument("--window-days", type=_days, default=DEFAULT_WINDOW,
                       help="keep the rows of this many days of event time before the newest "
                            f"event projected (default {DEFAULT_WINDOW.days})")


def _days(text: str) -> timedelta:
    return timedelta(days=positive_number(text))


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


def _prune(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url(), None) as conn:
        for schema in _schemas(conn, settings):
            use_schema(conn, schema)
            require_current(conn, schema)
            pruned = prune_applied_events(conn, args.window_days, datetime.now(UTC))
            before = "nothing projected yet" if pruned.horizon is None else \
                f"older than {pruned.horizon.isoformat()}"
            print(f"schema {schema!r}: pruned {pruned.deleted} applied_events rows {before} "
                  f"(window {args.window_days.total_seconds() / 86400:g} days) "
                  f"in {pruned.seconds:.2f} s")
    return 0


def _seed(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url(), None) as conn:
        for schema in _schemas(conn, settings):
            use_schema(conn, schema)
            changed = seed_database(conn, args.file, args.gpu_specs)
            conn.commit()
            print(f"schema {schema!r}: seeded interface_type and the GPU spec catalog: "
                  f"{changed} rows changed")
    return 0
