"""Least privilege by default, against the real PostgreSQL and the real commands: `hwledger db
migrate` creates the query service's read-only role, `hwledger serve` refuses a role that can
write and answers as the read-only one, through which no write gets in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from hwledger.deploy.local_processes import free_port
from hwledger.projectors.rebuild import create_versioned_schema
from hwledger.schemas.db import connect
from hwledger.schemas.errors import ConfigError
from hwledger.schemas.roles import check_query_role
from tests.cli import call, one_line_error, run, serving

pytestmark = pytest.mark.slow

GPU_REQUEST = {"resources": [{"resource": {"cpu": {"units": {"val": "1000"}}}, "count": 1}]}


def with_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))


@pytest.fixture
def query_role(own_database: str) -> Iterator[tuple[str, str]]:
    """A fresh role name and the query URL naming it (with a password); dropped afterwards."""
    role = f"q_{uuid.uuid4().hex[:10]}"
    yield role, with_user(own_database, role, f"pw-{uuid.uuid4().hex}")
    with connect(own_database, None, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def migrated(own_database: str, query_role: tuple[str, str], home: Path
             ) -> dict[str, str]:
    """The environment of a migrated database whose query role `hwledger db migrate` made."""
    env = {"HWLEDGER_DATABASE_URL": own_database, "HWLEDGER_QUERY_DATABASE_URL": query_role[1]}
    first = run(["db", "migrate"], home, **env)
    assert first.returncode == 0, first.stderr
    assert f"created role {query_role[0]!r}" in first.stdout
    assert run(["db", "seed"], home, **env).returncode == 0
    return env


def test_migrate_creates_a_select_only_role_idempotently(
        own_database: str, query_role: tuple[str, str], migrated: dict[str, str],
        home: Path) -> None:
    role, url = query_role
    again = run(["db", "migrate"], home, **migrated)
    assert again.returncode == 0 and f"checked role {role!r}" in again.stdout
    assert (urlsplit(url).password or "-") not in again.stdout + again.stderr
    with connect(own_database, None) as conn:
        found = conn.execute(
            "SELECT rolcanlogin, rolsuper, rolpassword LIKE 'SCRAM-SHA-256$%%', "
            "has_table_privilege(%(r)s, 'hwledger.provider_inventory', 'SELECT'), "
            "has_table_privilege(%(r)s, 'hwledger_meta.active_schema', 'SELECT'), "
            "has_table_privilege(%(r)s, 'hwledger.provider_inventory', "
            "'INSERT, UPDATE, DELETE, TRUNCATE'), "
            "has_schema_privilege(%(r)s, 'hwledger', 'CREATE') "
            "FROM pg_authid WHERE rolname = %(r)s", {"r": role}).fetchone()
    assert found == (True, False, True, True, True, False, False)


def test_migrate_without_a_query_url_makes_hwledger_query(own_database: str, home: Path
                                                           ) -> None:
    result = run(["db", "migrate"], home, HWLEDGER_DATABASE_URL=own_database)
    assert result.returncode == 0 and "role 'hwledger_query'" in result.stdout
    with connect(own_database, None) as conn:
        assert conn.execute("SELECT has_table_privilege('hwledger_query', "
                            "'hwledger.provider_inventory', 'SELECT')").fetchone() == (True,)


def test_serve_refuses_the_owner_role_in_one_line(migrated: dict[str, str], home: Path
                                                  ) -> None:
    owner = {"HWLEDGER_DATABASE_URL": migrated["HWLEDGER_DATABASE_URL"]}
    result = run(["serve", "--port", str(free_port())], home, **owner)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "can write (superuser" in result.stderr
    assert "HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE=1" in result.stderr
    with serving(home, HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE="1", **owner) as (_, base):
        assert call(base, "/readyz")[0] == 200


def test_a_role_granted_a_write_is_refused(own_database: str, query_role: tuple[str, str],
                                           migrated: dict[str, str]) -> None:
    role, url = query_role
    with connect(own_database, None, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT UPDATE ON hwledger.runs TO {}").format(sql.Identifier(role)))
    with pytest.raises(ConfigError, match=r"can write \(writes hwledger\.runs\)"):
        check_query_role(url, None, "HWLEDGER_QUERY_DATABASE_URL")


def test_serve_answers_as_the_read_only_role_which_cannot_write(
        query_role: tuple[str, str], migrated: dict[str, str], home: Path) -> None:
    with serving(home, **migrated) as (_, base):
        assert call(base, "/readyz")[0] == 200
        status, answer = call(base, "/v1/bid-screening", GPU_REQUEST)
        assert status == 200 and answer["providers"] == []
    with connect(query_role[1], "hwledger") as conn:
        conn.execute("SET TRANSACTION READ WRITE")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute("INSERT INTO hwledger_meta.deferred_inventory VALUES ('x')")
        conn.rollback()


@pytest.fixture
def plain_owner(database_url: str) -> Iterator[tuple[str, str]]:
    """A database owned by a LOGIN role that is neither superuser nor CREATEROLE: its URL as
    that owner and as the administrator."""
    owner, name = f"o_{uuid.uuid4().hex[:10]}", f"plain_{uuid.uuid4().hex[:10]}"
    with connect(database_url, None, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(owner)))
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(owner)))
    parts = urlsplit(database_url)._replace(path=f"/{name}")
    yield (urlunsplit(parts._replace(netloc=f"{owner}@{parts.hostname}:{parts.port}")),
           urlunsplit(parts))
    with connect(database_url, None, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner)))


def test_an_owner_that_may_not_create_roles_is_told_what_to_run(
        plain_owner: tuple[str, str], database_url: str, home: Path) -> None:
    owner_url, admin_url = plain_owner
    role = f"q_{uuid.uuid4().hex[:10]}"
    env = {"HWLEDGER_DATABASE_URL": owner_url,
           "HWLEDGER_QUERY_DATABASE_URL": with_user(owner_url, role, "pw")}
    first = run(["db", "migrate"], home, **env)
    assert first.returncode == 0, first.stderr
    assert f"role {role!r} is missing" in first.stdout and f"CREATE ROLE {role}" in first.stdout
    with connect(database_url, None, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        second = run(["db", "migrate"], home, **env)
        assert second.returncode == 0 and f"checked role {role!r}" in second.stdout
        check_query_role(env["HWLEDGER_QUERY_DATABASE_URL"], None, "X")
        with connect(admin_url, None, autocommit=True) as admin:
            admin.execute("CREATE SCHEMA elsewhere")  # an active schema the owner may not use
            admin.execute("UPDATE hwledger_meta.active_schema SET schema_name = 'elsewhere'")
        third = run(["db", "migrate"], home, **env)
        assert third.returncode == 1
        assert one_line_error(third) == (
            "hwledger: error: cannot migrate schema 'elsewhere': permission denied for schema "
            "elsewhere; run `hwledger db migrate` as a role that may create tables in it")
    finally:
        with connect(admin_url, None, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with connect(database_url, None, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_serve_without_its_database_exits_1_in_one_line(home: Path) -> None:
    result = run(["serve", "--port", str(free_port())], home,
                 HWLEDGER_QUERY_DATABASE_URL="postgresql://hwledger_query:pw@127.0.0.1:1/hw")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "cannot connect to PostgreSQL" in result.stderr
    assert "HWLEDGER_QUERY_DATABASE_URL" in result.stderr and ":pw@" not in result.stderr


def test_a_rebuild_schema_carries_the_query_roles_grants(
        own_database: str, query_role: tuple[str, str], migrated: dict[str, str]) -> None:
    schema = create_versioned_schema(own_database)
    with connect(own_database, None, autocommit=True) as conn:
        conn.execute("UPDATE hwledger_meta.active_schema SET schema_name = %s", (schema,))
    check_query_role(query_role[1], None, "HWLEDGER_QUERY_DATABASE_URL")
    with connect(query_role[1], schema) as conn:
        assert conn.execute("SELECT count(*) FROM interface_type").fetchone() != (0,)
