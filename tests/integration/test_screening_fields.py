"""Issue 15 points 2-5 and 7 through HTTP: leased IPs, reclamation windows, unlimited
allocatables and the answer's createdAt / location / organization, on a fleet published with
`hwledger publish --events` (the file is checked as a producer's would be), projected by the
projector's consumer and screened over HTTP.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hwledger.deploy.cli import main
from hwledger.deploy.kafka_admin import ensure_topic
from hwledger.projectors import catch_up
from hwledger.schemas.db import connect
from hwledger.schemas.events import EventData
from hwledger.schemas.migrations import drop_schema, migrate
from hwledger.schemas.units import GiB
from tests.factories import (
    at,
    provider_audited,
    provider_registered,
    run_finished,
    run_started,
    snapshot,
)
from tests.integration.query_support import (
    Screen,
    client,
    cpu_unit,
    fresh_schema,
    group_spec,
    owners,
    screener,
)

NOW = at(10)  # TTL 900 s: everything below is online
INT64_MAX = 2**63 - 1
ROOMY = {"cpu_millicores": 64_000, "memory_bytes": 512 * GiB,
         "ephemeral_storage_bytes": 1000 * GiB}
UNLIMITED = {"cpu_millicores": -1, "memory_bytes": -1, "ephemeral_storage_bytes": -1}


def fleet(tag: str) -> tuple[dict[str, str], list[EventData]]:
    """p-ips: a pool of 3 with 2 held by an unfinished run (1 more by a finished one), a
    2-hour window, a signed location and a self-declared organization; p-noop: no IP operator,
    no window; p-pool: 4 free, a 1-hour window, organizations signed by two auditors;
    p-unlimited: two nodes with every allocatable -1, never registered."""
    names = {k: f"{k}-{tag}" for k in ("p-ips", "p-noop", "p-pool", "p-unlimited")}
    ips, noop, pool, unlimited = names.values()
    ips_node = snapshot(ips, "n1", gpus=[], minutes=1, allocatable=ROOMY, storage=[])
    held = run_started(ips_node, "held", gpu_slots=[], minutes=2, leased_ips=2,
                       resources={"cpu_millicores": 1000, "memory_bytes": GiB,
                                  "ephemeral_storage_bytes": 0, "gpu_slots": []})
    done = run_started(ips_node, "done", gpu_slots=[], minutes=2, leased_ips=1,
                       resources={"cpu_millicores": 1000, "memory_bytes": GiB,
                                  "ephemeral_storage_bytes": 0, "gpu_slots": []})
    events: list[EventData] = [
        ("ProviderRegistered", provider_registered(
            ips, minutes=3, leased_ip_capacity=3, reclamation_window=7200,
            attributes={"location-region": "us-west", "organization": "SelfOrg"})),
        ("HardwareSnapshotted", ips_node), ("RunStarted", held), ("RunStarted", done),
        ("RunFinished", run_finished(done, minutes=4)),
        ("ProviderAudited", provider_audited(ips, "akash1auditora", minutes=4,
                                             attributes={"location-region": "eu-central"})),
        ("ProviderRegistered", provider_registered(noop, minutes=0,
                                                   attributes={"organization": "NoOpOrg"})),
        ("HardwareSnapshotted", snapshot(noop, "n1", gpus=[], minutes=2, allocatable=ROOMY,
                                         storage=[])),
        ("ProviderRegistered", provider_registered(pool, minutes=1, leased_ip_capacity=4,
                                                   reclamation_window=3600, attributes={})),
        ("HardwareSnapshotted", snapshot(pool, "n1", gpus=[], minutes=2, allocatable=ROOMY,
                                         storage=[])),
        ("ProviderAudited", provider_audited(pool, "akash1auditorb", minutes=3,
                                             attributes={"organization": "B"})),
        ("ProviderAudited", provider_audited(pool, "akash1auditora", minutes=3,
                                             attributes={"organization": "A"})),
        ("HardwareSnapshotted", snapshot(unlimited, "n1", gpus=[], minutes=5,
                                         allocatable=UNLIMITED, storage=[])),
        ("HardwareSnapshotted", snapshot(unlimited, "n2", gpus=[], minutes=5,
                                         allocatable=UNLIMITED, storage=[])),
    ]
    return names, events


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def publish_file(path: Path, events: list[EventData]) -> int:
    """`hwledger publish --events` of `events` written as a JSON-lines file."""
    path.write_text("".join(json.dumps({"type": t, "data": d}, default=_jsonable) + "\n"
                            for t, d in events))
    return main(["publish", "--events", str(path), "--timeout", "30"])


@pytest.fixture(scope="module")
def loaded(database_url: str, kafka_config: dict[str, Any], tmp_path_factory: Any
           ) -> Iterator[tuple[dict[str, str], str, str]]:
    names, events = fleet(uuid.uuid4().hex[:8])
    topic = f"hwledger.test.{uuid.uuid4().hex[:12]}"
    ensure_topic(kafka_config, topic, 3)
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as env, fresh_schema(database_url) as schema:
        env.setenv("HWLEDGER_HOME", str(home))
        env.setenv("HWLEDGER_KAFKA_BOOTSTRAP", kafka_config["bootstrap.servers"])
        env.setenv("HWLEDGER_TOPIC", topic)
        assert publish_file(home / "fleet.jsonl", events) == 0
        catch_up(database_url, schema, kafka_config, topic)
        yield names, schema, topic


@pytest.fixture(scope="module")
def http(database_url: str, loaded: tuple[dict[str, str], str, str]) -> Iterator[TestClient]:
    with client(database_url, loaded[1], NOW) as found:
        yield found


@pytest.fixture(scope="module")
def screen(http: TestClient) -> Screen:
    return screener(http)


def leased(*numbers: int, kind: str = "LEASED_IP") -> dict[str, Any]:
    unit = cpu_unit(1000)
    unit["resource"]["endpoints"] = [{"kind": kind, "sequenceNumber": n} for n in numbers]
    return unit


def ours(answer: dict[str, Any], names: dict[str, str]) -> set[str]:
    """The answer's providers of this module's fleet, by short name."""
    short = {v: k for k, v in names.items()}
    return {short[o] for o in owners(answer) if o in short}


def test_the_fleet_projects_without_dead_letters(
        database_url: str, loaded: tuple[dict[str, str], str, str]) -> None:
    with connect(database_url, loaded[1]) as conn:
        assert conn.execute("SELECT reason FROM dead_letters").fetchall() == []


@pytest.mark.parametrize("exact", [False, True])
def test_leased_ips_are_screened_against_the_free_pool(
        screen: Screen, loaded: tuple[dict[str, str], str, str], exact: bool) -> None:
    names = loaded[0]
    # #1 in two units is one IP: p-ips (1 free of 3: 2 held by an unfinished run) and p-pool
    one = screen(group_spec(leased(1), leased(1)), exact=exact)
    assert ours(one, names) == {"p-ips", "p-pool"}
    two = screen(group_spec(leased(1), leased(2)), exact=exact)
    assert ours(two, names) == {"p-pool"}
    assert ours(screen(group_spec(leased(1, 2, 3, 4, 5)), exact=exact), names) == set()
    # endpoints of other kinds need no leased IP: providers without an IP operator stay
    other = screen(group_spec(leased(1, kind="SHARED_HTTP"), leased(2, kind="RANDOM_PORT")),
                   exact=exact)
    assert ours(other, names) == set(names)


@pytest.mark.slow
def test_a_finished_run_gives_its_leased_ips_back(
        database_url: str, kafka_config: dict[str, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, http: TestClient,
        loaded: tuple[dict[str, str], str, str]) -> None:
    names, schema, topic = loaded
    before = http.get(f"/v1/providers/{names['p-ips']}").json()
    assert before["totals"]["leasedIp"] == 1
    for key, value in {"HWLEDGER_HOME": str(tmp_path), "HWLEDGER_TOPIC": topic,
                       "HWLEDGER_KAFKA_BOOTSTRAP": kafka_config["bootstrap.servers"]}.items():
        monkeypatch.setenv(key, value)
    held = run_started(snapshot(names["p-ips"], "n1"), "held")  # only its ids matter
    assert publish_file(tmp_path / "finish.jsonl", [("RunFinished", run_finished(
        held, minutes=6, event_id=str(uuid.uuid4())))]) == 0
    catch_up(database_url, schema, kafka_config, topic)
    after = http.get(f"/v1/providers/{names['p-ips']}").json()
    assert after["totals"]["leasedIp"] == 3
    assert ours(screener(http)(group_spec(leased(1, 2, 3)), exact=True), names) == {
        "p-ips", "p-pool"}
    assert http.get(f"/v1/providers/{names['p-noop']}").json()["totals"]["leasedIp"] is None


def test_the_provider_detail_carries_the_screening_fields(
        http: TestClient, loaded: tuple[dict[str, str], str, str]) -> None:
    detail = http.get(f"/v1/providers/{loaded[0]['p-ips']}").json()
    assert (detail["reclamationWindow"], detail["createdAt"], detail["location"],
            detail["organization"]) == (7200, "2026-11-01T12:01:00.000Z", "eu-central",
                                        "SelfOrg")
    plain = http.get(f"/v1/providers/{loaded[0]['p-unlimited']}").json()
    assert (plain["reclamationWindow"], plain["location"]) == (None, None)


@pytest.mark.parametrize(("window", "expected"), [
    (None, {"p-ips", "p-noop", "p-pool", "p-unlimited"}), (3600, {"p-ips", "p-pool"}),
    (7200, {"p-ips"}), (7201, set()),
])
def test_the_reclamation_window_must_cover_the_requested_one(
        screen: Screen, loaded: tuple[dict[str, str], str, str], window: int | None,
        expected: set[str]) -> None:
    spec = group_spec(cpu_unit(1000))
    if window is not None:
        spec["reclamationWindow"] = window
    for exact in (False, True):
        assert ours(screen(spec, exact=exact), loaded[0]) == expected


def test_unlimited_allocatables_saturate_the_totals_at_the_largest_bigint(
        screen: Screen, http: TestClient, loaded: tuple[dict[str, str], str, str]) -> None:
    names = loaded[0]
    totals = http.get(f"/v1/providers/{names['p-unlimited']}").json()["totals"]
    assert (totals["cpu"], totals["memory"], totals["ephemeral"]) == (INT64_MAX,) * 3
    quantity = 2**50  # 8,191 x 2^50 + (2^50 - 1) = 2^63 - 1, the largest total accepted
    largest = group_spec(cpu_unit(1, memory=quantity, count=8191),
                         cpu_unit(1, memory=quantity - 1))
    for exact in (False, True):
        assert ours(screen(largest, exact=exact), names) == {"p-unlimited"}
    too_large = group_spec(cpu_unit(1, memory=quantity, count=8191), cpu_unit(1, memory=quantity))
    response = http.post("/v1/bid-screening", json=too_large)
    assert response.status_code == 422
    assert response.json()["message"] == \
        "resources: totalMemory 9223372036854775808 is absurdly large"
    filtered = http.post("/v1/prefilter", json={"total_memory": INT64_MAX})
    assert filtered.status_code == 200, filtered.text
    assert ours(filtered.json(), names) == {"p-unlimited"}


def test_the_answer_carries_created_at_location_and_organization(
        screen: Screen, loaded: tuple[dict[str, str], str, str]) -> None:
    names = loaded[0]
    short = {v: k for k, v in names.items()}
    found = {short[p["owner"]]: (p["createdAt"], p["location"], p["organization"])
             for p in screen(group_spec(cpu_unit(1000)))["providers"] if p["owner"] in short}
    assert found == {
        "p-ips": ("2026-11-01T12:01:00.000Z", "eu-central", "SelfOrg"),  # signed, then self
        "p-noop": ("2026-11-01T12:00:00.000Z", None, "NoOpOrg"),
        "p-pool": ("2026-11-01T12:01:00.000Z", None, "A"),  # first auditor by name
        "p-unlimited": ("2026-11-01T12:05:00.000Z", None, None),
    }


def test_the_publish_file_check_refuses_allocatables_below_unlimited(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    monkeypatch.setenv("HWLEDGER_HOME", str(tmp_path))
    below = snapshot("p-below", allocatable={**UNLIMITED, "memory_bytes": -2})
    assert publish_file(tmp_path / "bad.jsonl", [("HardwareSnapshotted", below)]) == 2
    assert "allocatable.memory_bytes must not be negative (got -2)" in capsys.readouterr().err


@pytest.mark.slow
def test_provider_register_publishes_the_leased_ip_pool_and_the_window(
        database_url: str, kafka_config: dict[str, Any], topic: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in {"HWLEDGER_HOME": str(tmp_path), "HWLEDGER_TOPIC": topic,
                       "HWLEDGER_KAFKA_BOOTSTRAP": kafka_config["bootstrap.servers"]}.items():
        monkeypatch.setenv(key, value)
    register = ["provider", "register", "--host-uri", "https://p.example:8443"]
    assert main([*register, "--provider", "p-flags", "--leased-ips", "2",
                 "--reclamation-window", "86400"]) == 0
    assert main([*register, "--provider", "p-plain"]) == 0
    with pytest.raises(SystemExit):
        main([*register, "--provider", "p-bad", "--leased-ips", "-1"])
    assert "--leased-ips: -1 must not be negative" in capsys.readouterr().err
    with fresh_schema(database_url) as schema:
        catch_up(database_url, schema, kafka_config, topic)
        with connect(database_url, schema) as conn:
            assert conn.execute(
                "SELECT provider_id, leased_ip_capacity, reclamation_window FROM providers "
                "ORDER BY provider_id").fetchall() == [("p-flags", 2, 86400),
                                                       ("p-plain", None, None)]


def test_migration_0010_fills_the_new_columns_of_existing_rows(database_url: str) -> None:
    schema = f"m_{uuid.uuid4().hex[:12]}"
    try:
        with connect(database_url, None) as conn:
            migrate(conn, schema, target=7)
        with connect(database_url, schema) as conn:
            conn.execute(
                "INSERT INTO providers VALUES ('p-old', 'https://old', %s, %s, %s), "
                "('p-bare', 'https://bare', '{}', %s, %s)",
                (json.dumps({"location-region": "us-east", "organization": "Own"}), at(3),
                 str(uuid.uuid4()), at(1), str(uuid.uuid4())))
            conn.execute(
                "INSERT INTO provider_audits VALUES ('p-old', 'akash1b', %s, %s, %s), "
                "('p-old', 'akash1a', %s, %s, %s)",
                (json.dumps({"organization": "Signed B"}), at(4), str(uuid.uuid4()),
                 json.dumps({"tier": "x"}), at(4), str(uuid.uuid4())))
            conn.execute("INSERT INTO provider_inventory (provider_id) "
                         "VALUES ('p-old'), ('p-bare')")
            conn.commit()
            migrate(conn, schema)
            rows = conn.execute("SELECT provider_id, created_at, location, organization, "
                                "total_available_leased_ip, reclamation_window "
                                "FROM provider_inventory ORDER BY provider_id").fetchall()
    finally:
        drop_schema(database_url, schema)
    # akash1a signed no organization, so akash1b's is the first signed one
    assert rows == [("p-bare", at(1), None, None, None, None),
                    ("p-old", at(3), "us-east", "Signed B", None, None)]
