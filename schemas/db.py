"""Opening Postgres connections into one hwledger schema, with one-line errors.

Every table lives in a named Postgres schema (`hwledger` by default; rebuilds create
`hwledger_v<N>`). `connect` sets the search_path so the same SQL works against any of them.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

from hwledger.schemas.errors import UserError
from hwledger.schemas.secrets import redact

DEFAULT_SCHEMA: str = "hwledger"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(schema: str) -> str:
    """A schema name as used in `SET search_path`; rejects anything but [a-z0-9_]."""
    if not _SCHEMA_NAME.match(schema):
        raise UserError(f"invalid schema name {schema!r}: use lowercase letters, digits and _")
    return schema


def unparsable(setting: str) -> UserError:
    """The error for a connection string libpq cannot parse (its own words may quote the
    password, so they are not repeated)."""
    return UserError(f"{setting}: libpq cannot parse it; percent-encode spaces and reserved "
                     "characters in a URL, quote values with spaces in key=value form")


def connect(url: str, schema: str | None = DEFAULT_SCHEMA, *, autocommit: bool = False,
            setting: str = "HWLEDGER_DATABASE_URL",
            connect_timeout: int = 5) -> psycopg.Connection[Any]:
    """Connect and point search_path at `schema`; an unreachable server raises UserError."""
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=connect_timeout)
    except psycopg.ProgrammingError:
        raise unparsable(setting) from None
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(redact(
            f"cannot connect to PostgreSQL at {url} ({setting}): {first_line}")) from exc
    if schema is not None:
        use_schema(conn, schema)
        if not autocommit:
            conn.commit()
    return conn


def use_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    """Point search_path at `schema` (kept after the surrounding transaction commits)."""
    conn.execute(sql.SQL("SET search_path TO {}, public").format(
        sql.Identifier(check_schema_name(schema))))
