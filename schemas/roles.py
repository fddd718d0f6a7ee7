"""The query service's read-only role: `hwledger db migrate` creates it, `serve` checks it.

The role (`hwledger_query`, or the user HWLEDGER_QUERY_DATABASE_URL names, with that URL's
password) gets USAGE + SELECT on the migrated and the active schema and on `hwledger_meta`,
and nothing else; a rebuild schema inherits the grants (projectors/rebuild.py). Roles are
cluster-wide, so they are made here in code rather than in a schema's migrations. A migrating
role without CREATEROLE cannot create it: `ensure_query_role` then says what to run instead.
`write_privileges` lists what lets a role write; the query service refuses to start on such a
role unless HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE=1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from hwledger.schemas.db import connect, unparsable
from hwledger.schemas.errors import ConfigError
from hwledger.schemas.migrations import active_schema
from hwledger.schemas.secrets import redact

QUERY_ROLE = "hwledger_query"
META_SCHEMA = "hwledger_meta"
ALLOW_WRITABLE_ROLE = "HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE"

WRITE_PRIVILEGES_SQL = """
SELECT 'superuser' FROM pg_roles WHERE rolname = current_user AND rolsuper
UNION ALL
SELECT 'owns schema ' || n.nspname FROM pg_namespace n
WHERE n.nspname = ANY(%(schemas)s) AND pg_has_role(n.nspowner, 'USAGE')
UNION ALL
SELECT 'CREATE on schema ' || n.nspname FROM pg_namespace n
WHERE n.nspname = ANY(%(schemas)s) AND has_schema_privilege(n.oid, 'CREATE')
UNION ALL
SELECT 'writes ' || n.nspname || '.' || c.relname FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p')
  AND (pg_has_role(c.relowner, 'USAGE')
       OR has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE'))
"""
"""One row per reason the current role can write to `schemas`; none for a read-only role."""


def query_role(query_url: str | None) -> tuple[str, str | None]:
    """The role and password the query service connects with: from its URL, else
    `hwledger_query` without a password (trust or peer authentication, the local stack)."""
    if not query_url:
        return QUERY_ROLE, None
    try:
        params = conninfo_to_dict(query_url)
    except psycopg.ProgrammingError:
        raise unparsable("HWLEDGER_QUERY_DATABASE_URL") from None
    password = params.get("password")
    return str(params.get("user") or QUERY_ROLE), str(password) if password else None


def grant_read(conn: psycopg.Connection[Any], schema: str, role: str) -> None:
    """USAGE on `schema` and SELECT on its tables for `role`."""
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
        sql.Identifier(schema), sql.Identifier(role)))
    conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(
        sql.Identifier(schema), sql.Identifier(role)))


def _only_read(conn: psycopg.Connection[Any], schema: str, role: str) -> None:
    conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(
        sql.Identifier(schema), sql.Identifier(role)))
    conn.execute(sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(
        sql.Identifier(schema), sql.Identifier(role)))
    grant_read(conn, schema, role)


def ensure_query_role(conn: psycopg.Connection[Any], schema: str, query_url: str | None
                      ) -> str:
    """Create (when missing and allowed) the query service's role, set its password from the
    query URL, make it read-only and grant it only USAGE + SELECT on `schema`, the active
    schema (when it exists) and hwledger_meta; returns a one-line account of what it did or
    could not do."""
    role, password = query_role(query_url)
    try:
        with conn.transaction():
            return _ensure(conn, schema, role, password)
    except psycopg.errors.InsufficientPrivilege as exc:
        return (f"could not grant role {role!r} read access: "
                f"{redact(str(exc).splitlines()[0])}; grant it as the schemas' owner "
                "(docs/operations.md, Database roles)")


def _ensure(conn: psycopg.Connection[Any], schema: str, role: str, password: str | None
            ) -> str:
    me = conn.execute("SELECT current_user, rolsuper OR rolcreaterole FROM pg_roles "
                      "WHERE rolname = current_user").fetchone()
    assert me is not None
    if role == me[0]:
        return (f"the query service's URL names the migrating role {role!r}, which can "
                f"write; give HWLEDGER_QUERY_DATABASE_URL a role of its own (default "
                f"{QUERY_ROLE})")
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if not me[1] and not exists:
        return (f"role {role!r} is missing and {me[0]!r} may not create roles: run "
                f"CREATE ROLE {role} LOGIN PASSWORD '...' as an administrator, then "
                "`hwledger db migrate` again (docs/operations.md, Database roles)")
    if me[1]:
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        if password is not None:
            verifier = conn.pgconn.encrypt_password(password.encode(), role.encode())
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(verifier.decode())))
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on")
                     .format(sql.Identifier(role)))
    wanted = list(dict.fromkeys((schema, active_schema(conn), META_SCHEMA)))
    for (name,) in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) "
                                "ORDER BY nspname", (wanted,)).fetchall():
        _only_read(conn, name, role)
    return (f"{'created' if not exists else 'checked'} role {role!r}: USAGE + SELECT on "
            f"{schema}, the active schema and {META_SCHEMA}")


def write_privileges(conn: psycopg.Connection[Any], schemas: Sequence[str]) -> list[str]:
    """Why the connected role can write to `schemas` (empty when it only reads)."""
    rows = conn.execute(WRITE_PRIVILEGES_SQL, {"schemas": list(schemas)}).fetchall()
    conn.rollback()
    return [str(r[0]) for r in rows]


def writable_role_refusal(role: str, reasons: Sequence[str]) -> str | None:
    """The one-line refusal of a query service role that can write, None when it only reads."""
    if not reasons:
        return None
    shown = ", ".join(reasons[:3]) + (f" and {len(reasons) - 3} more" if len(reasons) > 3
                                      else "")
    return (f"the query service's database role {role!r} can write ({shown}); point "
            f"HWLEDGER_QUERY_DATABASE_URL at the read-only role `hwledger db migrate` creates "
            f"({QUERY_ROLE}), or set {ALLOW_WRITABLE_ROLE}=1 to run anyway")


def check_query_role(url: str, schema: str | None, setting: str) -> None:
    """ConfigError (exit 2, one line) when the role `url` connects as can write to the schema
    the query service reads (`schema`, else the active one) or to hwledger_meta."""
    with connect(url, None, setting=setting) as conn:
        reasons = write_privileges(conn, [schema or active_schema(conn), META_SCHEMA])
        refusal = writable_role_refusal(conn.info.user, reasons)
    if refusal is not None:
        raise ConfigError(refusal)


def prepare_query_role(database_url: str, schema: str, query_url: str | None) -> str:
    """`ensure_query_role` on a connection of the migrating role at `database_url`."""
    with connect(database_url, None) as conn:
        return ensure_query_role(conn, schema, query_url)
