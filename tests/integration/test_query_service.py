"""The query service's operational promises: it runs with a read-only role, follows a rebuild's
switch of the active schema without a restart, loses no request when Postgres ends its
connections (`pg_terminate_backend`), and no request from its OpenAPI schema gets a
5xx (schemathesis). The small fleet here is applied with the projector's `apply_events`; the
"Done when" assertions load through Kafka in test_query_api.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from psycopg import sql
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance

from hwledger.deploy.cli import main
from hwledger.query.service import SCHEMA_CACHE_SECONDS
from hwledger.schemas.db import connect
from hwledger.schemas.events import EventData
from hwledger.schemas.migrations import prepare_schema
from tests.factories import at, gpu, provider_audited, provider_registered, run_started, snapshot
from tests.integration.query_support import (
    client,
    cpu_unit,
    fresh_schema,
    gpu_unit,
    group_spec,
    owners,
    schema_with,
    screener,
)
from tests.waiting import wait_until

NOW = at(10)
FUZZ_EXAMPLES = 30
POOL_SIZE = 2  # query_support.client's


def small_fleet() -> list[EventData]:
    busy = snapshot("p-one", "node-1", gpus=[gpu(0, "h100-sxm"), gpu(1, "a100-pcie")])
    return [
        ("ProviderRegistered", provider_registered("p-one")),
        ("ProviderAudited", provider_audited("p-one")),
        ("HardwareSnapshotted", busy),
        ("RunStarted", run_started(busy, "run-one", gpu_slots=[1])),
        ("HardwareSnapshotted", snapshot("p-two", "node-1", gpus=[gpu(0, "mi300x")])),
        ("HardwareSnapshotted", snapshot("p-cpu", "node-1", gpus=[])),
    ]


@pytest.fixture(scope="module")
def fleet_schema(database_url: str) -> Iterator[str]:
    with schema_with(database_url, small_fleet()) as schema:
        yield schema


def with_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
def read_only_url(database_url: str, fleet_schema: str) -> Iterator[str]:
    """A role that can only SELECT from the read model and the active-schema pointer."""
    role, password = f"hwledger_ro_{uuid.uuid4().hex[:8]}", "read-only-test"
    with connect(database_url, None, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)))
        for schema in (fleet_schema, "hwledger_meta"):
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier(schema), sql.Identifier(role)))
            conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(
                sql.Identifier(schema), sql.Identifier(role)))
    yield with_user(database_url, role, password)
    with connect(database_url, None, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_runs_with_a_select_only_role(read_only_url: str, fleet_schema: str) -> None:
    with client(read_only_url, fleet_schema, NOW) as http:
        screen = screener(http)
        exact = screen(group_spec(gpu_unit(1, "vendor/nvidia/model/h100")), exact=True)
        assert owners(exact) == {"p-one"}
        assert exact["providers"][0]["placement"][0]["gpuSlots"] == [0]
        assert http.get("/v1/providers/p-one").status_code == 200
        assert http.get("/v1/runs/run-one").status_code == 200
        assert http.get("/readyz").status_code == 200
    with connect(read_only_url, fleet_schema) as conn, pytest.raises(
            psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM provider_inventory")


@pytest.fixture
def restore_active_schema(database_url: str) -> Iterator[None]:
    with connect(database_url, None, autocommit=True) as conn:
        row = conn.execute("SELECT schema_name FROM hwledger_meta.active_schema").fetchone()
    yield
    with connect(database_url, None, autocommit=True) as conn:
        conn.execute("UPDATE hwledger_meta.active_schema SET schema_name = %s",
                     (row[0] if row else "hwledger",))


def switch_active(database_url: str, schema: str) -> None:
    with connect(database_url, None, autocommit=True) as conn:
        conn.execute("UPDATE hwledger_meta.active_schema SET schema_name = %s", (schema,))


def test_follows_the_active_schema_switch_without_restart(
        database_url: str, fleet_schema: str, restore_active_schema: None) -> None:
    switch_active(database_url, fleet_schema)
    with fresh_schema(database_url) as empty, client(database_url, None, NOW) as http:
        screen = screener(http)
        before = screen(group_spec(cpu_unit(1000)))
        assert before["asOf"]["schema"] == fleet_schema and "p-cpu" in owners(before)
        switch_active(database_url, empty)
        wait_until(lambda: screen(group_spec(cpu_unit(1000)))["asOf"]["schema"] == empty,
                   SCHEMA_CACHE_SECONDS + 10, "the service to follow the switch")
        assert owners(screen(group_spec(cpu_unit(1000)))) == set()


def terminate_other_backends(url: str) -> int:
    with connect(url, None, autocommit=True) as conn:
        return len(conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall())


def test_terminated_backends_cost_no_request(own_database: str) -> None:
    from hwledger.projectors import apply_events

    prepare_schema(own_database, "hwledger")
    with connect(own_database, "hwledger") as conn:
        apply_events(conn, small_fleet())
        conn.commit()
    spec = group_spec(gpu_unit(1, "vendor/nvidia/model/h100"))
    with client(own_database, "hwledger", NOW, schema_cache_seconds=0) as http:
        screen = screener(http)  # every request reads the schema, on a terminated one too
        assert owners(screen(spec, exact=True)) == {"p-one"}
        assert http.get("/v1/providers/p-one").status_code == 200
        assert terminate_other_backends(own_database) >= 2
        for _ in range(2 * POOL_SIZE):
            assert owners(screen(spec, exact=True)) == {"p-one"}
            assert owners(screen(spec)) == {"p-one"}
            detail = http.get("/v1/providers/p-one")
            assert detail.status_code == 200, detail.text


@pytest.mark.slow
def test_fuzz_from_openapi_never_5xx_and_reads_match_their_schemas(
        database_url: str, fleet_schema: str) -> None:
    with client(database_url, fleet_schema, NOW, max_wait_seconds=0.05) as http:
        schema = schemathesis.openapi.from_asgi("/openapi.json", http.app)
        failures: list[str] = []
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result.err()
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def call(case: Any) -> None:
                    response = case.call()
                    if response.status_code >= 500:
                        failures.append(f"{case.method} {case.formatted_path} "
                                        f"{case.query} {case.body!r:.300} -> "
                                        f"{response.status_code} {response.text[:200]}")
                    elif case.method == "GET":  # the read routes' answers match their schemas
                        try:
                            case.validate_response(response, checks=[response_schema_conformance])
                        except (AssertionError, FailureGroup) as exc:
                            failures.append(f"GET {case.formatted_path}: {exc}"[:500])

                try:
                    call()
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE  # no inputs -> no negative cases
        assert not failures, failures[:5]


def test_screen_command(database_url: str, fleet_schema: str, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                        ) -> None:
    for name, value in (("HWLEDGER_QUERY_DATABASE_URL", database_url),
                        ("HWLEDGER_DB_SCHEMA", fleet_schema),
                        ("HWLEDGER_ONLINE_TTL_SECONDS", str(10**9)),
                        ("HWLEDGER_HOME", str(tmp_path))):
        monkeypatch.setenv(name, value)
    request = tmp_path / "request.json"
    request.write_text(json.dumps(group_spec(gpu_unit(1, "vendor/nvidia"))))
    assert main(["screen", str(request), "--exact", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert owners(answer) == {"p-one"} and answer["rejected"] == []
    assert main(["screen", str(request)]) == 0
    table = capsys.readouterr().out
    assert "p-one" in table and "p-cpu" not in table
    request.write_text(json.dumps(group_spec(gpu_unit(1, "model/h100"))))
    assert main(["screen", str(request)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("hwledger: error: ") and "resources[0].resource.gpu" in error
    assert len(error.strip().splitlines()) == 1
