"""`hwledger db migrate|seed`: bring the read-model schema up to date."""

from __future__ import annotations

import argparse
from pathlib import Path

from hwledger.deploy.commands import Subparsers, add_command, add_group
from hwledger.deploy.config import Settings
from hwledger.schemas.db import DEFAULT_SCHEMA, connect
from hwledger.schemas.migrations import migrate
from hwledger.seeds import seed_database


def register(subparsers: Subparsers) -> None:
    db = add_group(subparsers, "db", "database migrations and seed data")
    add_command(db, "migrate", _migrate, "apply pending migrations (idempotent)")
    seed = add_command(db, "seed", _seed, "load seeds/interface_types.json (idempotent)")
    seed.add_argument("--file", type=Path, help="another interface_types.json to load")


def _schema(settings: Settings) -> str:
    return str(settings.db_schema or DEFAULT_SCHEMA)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url(), None) as conn:
        applied = migrate(conn, _schema(settings))
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
    print(f"applied {names}" if applied else f"schema {_schema(settings)!r} is up to date")
    return 0


def _seed(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings.require_database_url(), _schema(settings)) as conn:
        changed = seed_database(conn, args.file)
        conn.commit()
    print(f"seeded interface_type: {changed} rows changed")
    return 0
