"""Schema versions across a rebuild: `hwledger db migrate` reaches the live schema (and every
read-model schema left), and `project`, `serve` and `rebuild` refuse a schema behind the newest
migration file with one line naming `hwledger db migrate`."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwledger.projectors.rebuild import try_switch
from hwledger.schemas.db import connect
from hwledger.schemas.migrations import (
    active_schema,
    current_version,
    migrations,
    newest_version,
)
from tests.cli import one_line_error, run
from tests.servers import Servers

pytestmark = pytest.mark.slow

BEHIND = migrations()[-2].version
"""The migration before the newest (numbers may have gaps)."""


def migrate_to(url: str, home: Path, version: int, schema: str | None = None) -> None:
    env = {"HWLEDGER_DATABASE_URL": url} | ({"HWLEDGER_DB_SCHEMA": schema} if schema else {})
    result = run(["db", "migrate", "--to", str(version)], home, **env)
    assert result.returncode == 0, result.stderr


def test_migrate_reaches_the_live_schema_after_a_rebuild_switch(own_database: str,
                                                                 home: Path) -> None:
    migrate_to(own_database, home, BEHIND)
    migrate_to(own_database, home, BEHIND, "hwledger_v1")
    with connect(own_database, None) as conn:
        assert try_switch(conn, "hwledger_v1", "hwledger.events")
    result = run(["db", "migrate"], home, HWLEDGER_DATABASE_URL=own_database)
    assert result.returncode == 0, result.stderr
    assert "'hwledger_v1': applied" in result.stdout.splitlines()[0]
    with connect(own_database, None) as conn:
        assert active_schema(conn) == "hwledger_v1"
        assert {s: current_version(conn, s) for s in ("hwledger", "hwledger_v1")} == {
            "hwledger": newest_version(), "hwledger_v1": newest_version()}
    seeded = run(["db", "seed"], home, HWLEDGER_DATABASE_URL=own_database)
    assert seeded.returncode == 0 and "'hwledger_v1'" in seeded.stdout, seeded.stderr


@pytest.mark.parametrize("command", [["project", "--until-caught-up"], ["serve"], ["rebuild"]])
def test_a_schema_behind_the_code_is_refused(own_database: str, home: Path, servers: Servers,
                                             topic: str, command: list[str]) -> None:
    migrate_to(own_database, home, BEHIND)
    result = run(command, home, HWLEDGER_DATABASE_URL=own_database, HWLEDGER_TOPIC=topic,
                 HWLEDGER_KAFKA_BOOTSTRAP=servers.kafka_bootstrap, HWLEDGER_METRICS_PORT="0",
                 HWLEDGER_HTTP_PORT="0", HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE="1")
    assert result.returncode == 2, result.stderr
    assert one_line_error(result) == (
        f"hwledger: error: schema 'hwledger' is at migration {BEHIND}, this hwledger needs "
        f"migration {newest_version()}: run `hwledger db migrate` first")
