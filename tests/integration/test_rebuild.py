"""Rebuild while serving: replay into a new schema, switch readers, verify equality."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import urllib.error
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from confluent_kafka import Producer

from hwledger.deploy.bench.fleet import history
from hwledger.deploy.cli import main
from hwledger.deploy.config import Settings
from hwledger.deploy.live import LiveSystem, live_system
from hwledger.deploy.local_processes import free_port
from hwledger.projectors import catch_up
from hwledger.projectors.checksums import table_checksums
from hwledger.projectors.config import ProjectorConfig
from hwledger.projectors.metrics import Metrics
from hwledger.projectors.plan import Record
from hwledger.projectors.rebuild import (
    RebuildProgress,
    create_versioned_schema,
    finish_inventory,
    rebuild,
    stored_offsets,
)
from hwledger.projectors.service import Projector
from hwledger.projectors.verify import compare
from hwledger.projectors.writer import Writer
from hwledger.schemas import codec
from hwledger.schemas.db import connect
from hwledger.schemas.migrations import active_schema, drop_schema, migrate, scratch_schema
from hwledger.seeds.seeding import seed_database
from tests.integration.projector_support import FAST_GROUP
from tests.integration.query_support import client, publish
from tests.servers import Servers
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

GPU_REQUEST = {"resources": [{"count": 1, "resource": {
    "cpu": {"units": {"val": "100"}}, "memory": {"quantity": {"val": str(2**30)}},
    "gpu": {"units": {"val": "1"}, "attributes": [{"key": "vendor/nvidia/model/*",
                                                   "value": "true"}]}}}]}


class QueryLoop:
    """Asks the HTTP service the same GPU question until stopped; counts what went wrong."""

    def __init__(self, system: LiveSystem) -> None:
        self.system = system
        self.answers = 0
        self.failures: list[str] = []
        self.empty_after_data = 0
        self.seen_data = False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                providers = self.system.post("/v1/bid-screening", GPU_REQUEST)["providers"]
            except (urllib.error.URLError, OSError) as exc:
                self.failures.append(str(exc))
                continue
            self.answers += 1
            if providers:
                self.seen_data = True
            elif self.seen_data:
                self.empty_after_data += 1
            time.sleep(0.01)


def _live_schema_of(database_url: str, kafka_config: dict[str, Any], topic: str) -> None:
    """Project `topic` into the database's `hwledger` schema (the live one)."""
    with connect(database_url, None) as conn:
        migrate(conn, "hwledger")
    with connect(database_url, "hwledger") as conn:
        seed_database(conn)
        conn.commit()
    catch_up(database_url, "hwledger", kafka_config, topic)


def test_rebuild_switch_under_query_load_then_verify_equal(
        own_database: str, servers: Servers, kafka_config: dict[str, Any], topic: str,
        tmp_path: Path) -> None:
    settings = Settings(database_url=own_database, kafka_bootstrap=servers.kafka_bootstrap,
                        topic=topic, partitions=3, home=tmp_path, http_port=free_port(),
                        online_ttl_seconds=10**9, query_allow_writable_role=True)
    events = list(history(seed=11, providers=400, events=50_000))
    with live_system(settings, group_id=f"live-{topic}") as system:
        loop = QueryLoop(system)
        loop.thread.start()
        publish(kafka_config, topic, events)
        system.wait_for_events(1, timeout=60)
        result = rebuild(own_database, topic, kafka_config)
        assert result.switched and result.previous == "hwledger"
        with connect(own_database, None) as conn:
            assert active_schema(conn) == result.schema
        answered = loop.answers
        wait_until(lambda: loop.answers > answered + 5, 30, "answers after the switch")
        loop.stop.set()
        loop.thread.join(10)
        with connect(own_database, None, autocommit=True) as conn:
            wait_until(lambda: stored_offsets(conn, "hwledger", topic) == stored_offsets(
                conn, result.schema, topic), 120, "the live projector to catch up", interval=0.2)
    assert loop.failures == []
    assert loop.seen_data and loop.empty_after_data == 0 and loop.answers > 20
    assert result.events >= len(events)
    diffs = compare(own_database, "hwledger", result.schema)
    assert [d.table for d in diffs if not d.equal] == []
    assert all(d.rows_a > 0 for d in diffs if d.table not in ("dead_letters",))


def test_rebuild_of_an_empty_log_finishes_and_switches(
        own_database: str, kafka_config: dict[str, Any], topic: str) -> None:
    result = rebuild(own_database, topic, kafka_config)
    assert (result.events, result.switched, result.previous) == (0, True, "hwledger")
    with connect(own_database, None) as conn:
        assert active_schema(conn) == result.schema


def test_rebuild_of_a_poisoned_log_rebuilds_the_dead_letters(
        own_database: str, kafka_config: dict[str, Any], topic: str) -> None:
    producer = Producer(kafka_config)
    for i in range(300):
        producer.produce(topic, key=f"p{i % 7}".encode(),
                         value=b"\xc3\x01garbage" + bytes([i % 256]))
    assert producer.flush(30) == 0
    result = rebuild(own_database, topic, kafka_config)
    assert result.switched and result.events == 300
    with connect(own_database, result.schema) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT reason) FROM dead_letters").fetchone()
    assert row is not None and row[0] == 300


def test_rebuild_fills_a_new_derived_column_for_the_whole_history(
        own_database: str, kafka_config: dict[str, Any], topic: str) -> None:
    publish(kafka_config, topic, list(history(seed=5, providers=30, events=600)))
    _live_schema_of(own_database, kafka_config, topic)
    with connect(own_database, "hwledger") as conn:
        # The live schema as projected before migration 0002: the new column is empty.
        conn.execute("UPDATE system_hardware SET total_vram_bytes = NULL")
        conn.commit()
    result = rebuild(own_database, topic, kafka_config)
    with connect(own_database, result.schema) as conn:
        rows = conn.execute(
            "SELECT s.total_vram_bytes, coalesce(sum(g.vram_bytes), 0) FROM system_hardware s "
            "LEFT JOIN system_gpu_link l USING (system_hardware_id) "
            "LEFT JOIN gpu_hardware g USING (gpu_hardware_id) "
            "GROUP BY s.system_hardware_id, s.total_vram_bytes").fetchall()
    assert rows and all(total == expected for total, expected in rows)
    assert any(total > 0 for total, _ in rows)
    diffs = {d.table: d for d in compare(own_database, "hwledger", result.schema)}
    assert [t for t, d in diffs.items() if not d.equal] == ["system_hardware"]
    assert len(diffs["system_hardware"].only_in_b) > 0


def test_rebuild_with_two_workers_replays_every_partition_once(
        own_database: str, kafka_config: dict[str, Any], topic: str) -> None:
    events = list(history(seed=11, providers=30, events=1500))
    publish(kafka_config, topic, events)
    _live_schema_of(own_database, kafka_config, topic)
    result = rebuild(own_database, topic, kafka_config, switch=False, workers=2,
                     batch_size=200)
    assert (result.events, result.switched) == (len(events), False)
    assert all(d.equal for d in compare(own_database, "hwledger", result.schema))


def test_a_failed_rebuild_helper_leaves_its_partitions_to_the_rebuild(
        own_database: str, kafka_config: dict[str, Any], topic: str) -> None:
    events = list(history(seed=12, providers=30, events=1500))
    publish(kafka_config, topic, events)
    _live_schema_of(own_database, kafka_config, topic)
    killed: list[int] = []

    def kill_helpers(_: RebuildProgress) -> None:
        for helper in multiprocessing.active_children():
            if helper.name.startswith("hwledger-projector") and helper.pid is not None:
                os.kill(helper.pid, signal.SIGKILL)
                killed.append(helper.pid)

    result = rebuild(own_database, topic, kafka_config, switch=False, workers=2,
                     batch_size=100, listener=kill_helpers)
    assert killed, "the helper was never seen alive"
    assert result.events == len(events)
    assert all(d.equal for d in compare(own_database, "hwledger", result.schema))


def test_deferred_inventory_is_built_once_and_equals_the_live_one(database_url: str) -> None:
    records = [Record("deferred", 0, i, codec.encode(kind, data)) for i, (kind, data)
               in enumerate(history(seed=3, providers=40, events=2000))]
    first, rest = records[:1500], records[1500:]
    deferred = create_versioned_schema(database_url, f"deferred_{uuid.uuid4().hex[:8]}")
    try:
        with scratch_schema(database_url, "live") as live, \
                connect(database_url, live) as live_conn, \
                connect(database_url, deferred) as conn:
            live_writer = Writer(live_conn, timedelta(hours=6))
            writer = Writer(conn, timedelta(hours=6), defer_inventory=True)
            for batch in (first, rest):
                live_writer.apply(batch, {})
            writer.apply(first, {})
            row = conn.execute("SELECT count(*), count(last_seen_at), sum(node_count), "
                               "max(cardinality(gpu_models)) FROM provider_inventory").fetchone()
            assert row == (40, 40, 0, 0)  # only the last event times while deferred
            conn.commit()
            finish_inventory(database_url, deferred)
            writer.apply(rest, {})
            assert not writer.defer_inventory
            assert conn.execute("SELECT count(*) FROM hwledger_meta.deferred_inventory "
                                "WHERE schema_name = %s", (deferred,)).fetchone() == (0,)
            conn.commit()
            assert table_checksums(conn) == table_checksums(live_conn)
    finally:
        drop_schema(database_url, deferred)


def test_verify_replays_into_a_scratch_schema_and_finds_a_changed_inventory_row(
        own_database: str, servers: Servers, kafka_config: dict[str, Any], topic: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    publish(kafka_config, topic, list(history(seed=8, providers=25, events=800)))
    _live_schema_of(own_database, kafka_config, topic)
    monkeypatch.setenv("HWLEDGER_DATABASE_URL", own_database)
    monkeypatch.setenv("HWLEDGER_KAFKA_BOOTSTRAP", servers.kafka_bootstrap)
    monkeypatch.setenv("HWLEDGER_TOPIC", topic)
    assert main(["verify"]) == 0  # the replay's deferred inventory equals the live one
    with connect(own_database, "hwledger") as conn:
        conn.execute("UPDATE provider_inventory SET gpu_models_free = '{}' "
                     "WHERE cardinality(gpu_models_free) > 0")
        conn.commit()
    assert main(["verify"]) == 1
    with connect(own_database, None) as conn:
        assert conn.execute("SELECT count(*) FROM hwledger_meta.deferred_inventory"
                            ).fetchone() == (0,)


def test_verify_of_conflicting_producer_reports_equals_the_live_schema(
        own_database: str, servers: Servers, kafka_config: dict[str, Any], topic: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Live batches of 7 events over three partitions against one replay batch: producers that
    spell one GPU or host differently give the same tables."""
    publish(kafka_config, topic, list(history(seed=9, providers=20, events=700,
                                              conflicting=True)))
    with connect(own_database, None) as conn:
        migrate(conn, "hwledger")
    with connect(own_database, "hwledger") as conn:
        seed_database(conn)
        conn.commit()
    Projector(ProjectorConfig(
        database_url=own_database, schema="hwledger", topic=topic, batch_size=7,
        kafka={**FAST_GROUP, **kafka_config}, group_id="live-small-batches",
        exit_when_caught_up=True), Metrics()).run()
    monkeypatch.setenv("HWLEDGER_DATABASE_URL", own_database)
    monkeypatch.setenv("HWLEDGER_KAFKA_BOOTSTRAP", servers.kafka_bootstrap)
    monkeypatch.setenv("HWLEDGER_TOPIC", topic)
    assert main(["verify"]) == 0


def test_a_read_only_role_keeps_reading_across_a_rebuild_switch(
        own_database: str, kafka_config: dict[str, Any], topic: str) -> None:
    """The schema a rebuild creates carries the active schema's read grants (issue 12)."""
    role = f"ro_{uuid.uuid4().hex[:8]}"
    _live_schema_of(own_database, kafka_config, topic)
    with connect(own_database, None, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        for schema in ("hwledger", "hwledger_meta"):
            admin.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
            admin.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
    events = list(history(3, 4, 60))
    publish(kafka_config, topic, events)
    host = urlsplit(own_database)
    reader = urlunsplit(host._replace(netloc=f"{role}@{host.hostname}:{host.port}"))
    result = rebuild(own_database, topic, kafka_config)
    assert result.switched and result.schema != "hwledger"

    now = max(d["occurred_at"] for _, d in events)
    with client(reader, None, now) as http:
        response = http.post("/v1/bid-screening", json=GPU_REQUEST)
    assert response.status_code == 200, response.text
    assert response.json()["providers"]
    with connect(reader, None) as conn:
        assert active_schema(conn) == result.schema
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f'DELETE FROM "{result.schema}".providers')
