"""The query role's pure parts: which role and password a query URL names, the refusal line,
and the HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwledger.deploy.config import Settings
from hwledger.schemas.errors import ConfigError, UserError
from hwledger.schemas.roles import QUERY_ROLE, query_role, writable_role_refusal


@pytest.mark.parametrize(("url", "expected"), [
    (None, (QUERY_ROLE, None)),
    ("postgresql://reader:s%40cret@db/hw", ("reader", "s@cret")),
    ("postgresql://db/hw?user=reader&password=pw", ("reader", "pw")),
    ("host=db user=reader password='se cret'", ("reader", "se cret")),
    ("postgresql://db/hw", (QUERY_ROLE, None)),
])
def test_the_query_url_names_the_role_and_its_password(
        url: str | None, expected: tuple[str, str | None]) -> None:
    assert query_role(url) == expected


def test_an_unparsable_query_url_is_one_line_without_its_text() -> None:
    with pytest.raises(UserError, match="HWLEDGER_QUERY_DATABASE_URL: libpq cannot parse") as e:
        query_role("postgresql://reader:Zq7 Xk@db/hw")
    assert "Zq7" not in str(e.value)


def test_a_read_only_role_is_not_refused() -> None:
    assert writable_role_refusal("reader", []) is None


def test_the_refusal_names_the_role_the_reasons_and_the_way_out() -> None:
    reasons = ["superuser", "owns schema hwledger", "writes hwledger.runs", "writes hwledger.x",
               "writes hwledger.y"]
    assert writable_role_refusal("postgres", reasons) == (
        "the query service's database role 'postgres' can write (superuser, owns schema "
        "hwledger, writes hwledger.runs and 2 more); point HWLEDGER_QUERY_DATABASE_URL at the "
        "read-only role `hwledger db migrate` creates (hwledger_query), or set "
        "HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE=1 to run anyway")


@pytest.mark.parametrize(("raw", "allowed"), [("1", True), ("true", True), ("0", False),
                                              ("", False)])
def test_the_allow_flag(raw: str, allowed: bool) -> None:
    settings = Settings.from_env({"HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE": raw})
    assert settings.query_allow_writable_role is allowed


def test_a_bad_allow_flag_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE='yes please'"):
        Settings.from_env({"HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE": "yes please"})


def test_the_local_stack_names_the_query_role_only_with_its_own_database(tmp_path: Path
                                                                         ) -> None:
    (tmp_path / "stack.json").write_text(
        '{"database_url": "postgresql://postgres@127.0.0.1:5/hwledger", '
        '"query_database_url": "postgresql://hwledger_query@127.0.0.1:5/hwledger", '
        '"kafka_bootstrap": "127.0.0.1:6"}')
    stack = Settings.from_env({"HWLEDGER_HOME": str(tmp_path)})
    assert stack.query_database_url == "postgresql://hwledger_query@127.0.0.1:5/hwledger"
    own = Settings.from_env({"HWLEDGER_HOME": str(tmp_path),
                             "HWLEDGER_DATABASE_URL": "postgresql://me@db/hw"})
    assert own.query_database_url is None and own.query_url_setting() == "HWLEDGER_DATABASE_URL"
