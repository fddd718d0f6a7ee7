"""Bringing a database to the current version: migrations plus seed data, idempotently."""

from __future__ import annotations

from hwledger.deploy.config import Settings
from hwledger.schemas.db import DEFAULT_SCHEMA, connect, use_schema
from hwledger.schemas.migrations import migrate
from hwledger.seeds import seed_database


def prepare_database(database_url: str, settings: Settings) -> tuple[int, int]:
    """Migrate and seed the configured schema; returns (migrations applied, seed rows changed)."""
    schema = settings.db_schema or DEFAULT_SCHEMA
    with connect(database_url, None) as conn:
        applied = migrate(conn, schema)
        use_schema(conn, schema)
        changed = seed_database(conn)
        conn.commit()
    return len(applied), changed
