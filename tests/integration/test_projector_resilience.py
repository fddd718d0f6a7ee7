"""Crashes, rebalances, SIGTERM and a lost database connection: the tables still converge.

Each test lets 20,000 events flow through the broker while projector processes are killed,
started and stopped; afterwards the tables must equal a clean single-pass projection of the
same log (per-table checksums), and a reader polling throughout must never see a
provider_inventory row that disagrees with its nodes' GPUs.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from hwledger.deploy.bench.fleet import history
from hwledger.deploy.kafka_admin import ensure_topic
from hwledger.deploy.local_postgres import EmbeddedPostgres
from hwledger.deploy.local_processes import free_port, stop_pid
from hwledger.deploy.tansu_broker import EmbeddedBroker
from hwledger.projectors.service import Projector
from hwledger.schemas.db import connect
from hwledger.schemas.migrations import prepare_schema
from tests.integration.projector_support import (
    INVENTORY_DISAGREES_WITH_NODES,
    RestartingProxy,
    checksums,
    encoded,
    fresh_schema,
    project_all,
    projector_config,
    publish,
    spawn,
    stored_total,
    wait_until_assigned,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

EVENTS = 20_000


class Reader(threading.Thread):
    """Polls one schema with a single statement: inventory rows disagreeing with nodes."""

    def __init__(self, database_url: str, schema: str) -> None:
        super().__init__(daemon=True)
        self.database_url, self.schema = database_url, schema
        self.polls = 0
        self.violations = 0
        self.done = threading.Event()

    def run(self) -> None:
        with connect(self.database_url, self.schema, autocommit=True) as conn:
            while not self.done.is_set():
                row = conn.execute(INVENTORY_DISAGREES_WITH_NODES).fetchone()
                self.violations += int(row[0]) if row else 0
                self.polls += 1
                time.sleep(0.05)


class Flow(threading.Thread):
    """Publishes the log in chunks, so events keep arriving while projectors come and go."""

    def __init__(self, kafka_config: dict[str, Any], topic: str,
                 messages: list[tuple[str, bytes]], seconds: float) -> None:
        super().__init__(daemon=True)
        self.args = (kafka_config, topic, messages, seconds)

    def run(self) -> None:
        kafka_config, topic, messages, seconds = self.args
        chunks = 20
        size = -(-len(messages) // chunks)
        for i in range(chunks):
            publish(kafka_config, topic, messages[i * size:(i + 1) * size])
            time.sleep(seconds / chunks)


@pytest.fixture
def log_messages() -> list[tuple[str, bytes]]:
    return encoded(history(20_26, 60, EVENTS))


@pytest.fixture
def schemas(database_url: str) -> Iterator[tuple[str, str]]:
    with fresh_schema(database_url) as live, fresh_schema(database_url) as clean:
        yield live, clean


def assert_equals_clean_pass(database_url: str, live: str, clean: str, topic: str,
                             kafka_config: dict[str, Any]) -> None:
    assert stored_total(database_url, live, topic) == EVENTS
    project_all(database_url, clean, topic, kafka_config)
    got, want = checksums(database_url, live), checksums(database_url, clean)
    assert got == want
    assert got["applied_events"][0] == EVENTS  # every event exactly once, no duplicate rows


def test_sigkill_at_random_moments_converges(database_url: str, kafka_config: dict[str, Any],
                                             topic: str, schemas: tuple[str, str],
                                             log_messages: list[tuple[str, bytes]]) -> None:
    live, clean = schemas
    rng = random.Random(4)
    flow = Flow(kafka_config, topic, log_messages, 25)
    reader = Reader(database_url, live)
    flow.start()
    reader.start()
    progress = [0]
    for _ in range(10):
        proc = spawn(database_url, live, topic, kafka_config, f"crash-{topic}",
                     "--batch-size", "500")
        wait_until(lambda: stored_total(database_url, live, topic) > progress[-1], 20,
                   "the projector to make progress", interval=0.02)
        time.sleep(rng.uniform(0, 0.4))  # a random moment while it is projecting
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        progress.append(stored_total(database_url, live, topic))
    flow.join()
    last = spawn(database_url, live, topic, kafka_config, f"crash-{topic}", "--until-caught-up")
    _, stderr = last.communicate(timeout=180)
    assert last.returncode == 0, stderr.decode()[-2000:]
    reader.done.set()
    reader.join()
    assert len(set(progress)) >= 9, progress  # killed while projecting, again and again
    assert reader.polls > 20 and reader.violations == 0
    assert_equals_clean_pass(database_url, live, clean, topic, kafka_config)


def test_three_projectors_joining_and_leaving_converge(
        database_url: str, kafka_config: dict[str, Any], topic: str, schemas: tuple[str, str],
        log_messages: list[tuple[str, bytes]]) -> None:
    live, clean = schemas
    flow = Flow(kafka_config, topic, log_messages, 20)
    reader = Reader(database_url, live)
    flow.start()
    reader.start()

    def progressing() -> None:
        """Wait until the group projects again: each join or leave waits for the previous
        rebalance to settle. leader_stays: the embedded broker (Tansu) does not elect a new
        group leader when the leader leaves, so the first member stays until the end."""
        before = stored_total(database_url, live, topic)

        def projected_more() -> bool:
            now = stored_total(database_url, live, topic)
            return now > before or now == EVENTS

        wait_until(projected_more, 30, "the group to project again")

    def join() -> subprocess.Popen[bytes]:
        proc = spawn(database_url, live, topic, kafka_config, f"rebalance-{topic}",
                     "--batch-size", "500")
        wait_until_assigned(proc)
        progressing()
        return proc

    def leave(proc: subprocess.Popen[bytes], settle: bool = True) -> None:
        proc.send_signal(signal.SIGTERM)  # its partitions move to the others
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr.decode()[-1500:]
        if settle:
            progressing()

    first, second = join(), join()  # `first` leads the group (see progressing)
    third = join()
    leave(second)
    again = join()
    leave(third)
    moved = stored_total(database_url, live, topic)
    flow.join()
    wait_until(lambda: stored_total(database_url, live, topic) == EVENTS, 90,
               "every event to be projected", interval=0.2)
    leave(again, settle=False)
    leave(first, settle=False)
    reader.done.set()
    reader.join()
    assert moved < EVENTS  # the group changed while events were still flowing
    assert reader.polls > 20 and reader.violations == 0
    assert_equals_clean_pass(database_url, live, clean, topic, kafka_config)


def test_sigterm_finishes_the_batch_in_flight_and_exits_0(
        database_url: str, db_schema: str, kafka_config: dict[str, Any], topic: str,
        log_messages: list[tuple[str, bytes]]) -> None:
    publish(kafka_config, topic, log_messages[:5000])
    proc = spawn(database_url, db_schema, topic, kafka_config, f"term-{topic}",
                 "--batch-size", "200")
    wait_until(lambda: stored_total(database_url, db_schema, topic) > 0, 60,
               "the first batch")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    with connect(database_url, db_schema) as conn:
        row = conn.execute("SELECT count(*) FROM applied_events").fetchone()
    assert row is not None and 0 < row[0] == stored_total(database_url, db_schema, topic)


def test_lost_database_connection_is_retried_without_loss(
        database_url: str, db_schema: str, kafka_config: dict[str, Any], topic: str,
        log_messages: list[tuple[str, bytes]]) -> None:
    publish(kafka_config, topic, log_messages[:6000])
    projector = Projector(projector_config(database_url, db_schema, topic, kafka_config,
                                           batch_size=200, backoff_seconds=0.05))
    worker = threading.Thread(target=projector.run)
    worker.start()
    terminated = 0
    with connect(database_url, None, autocommit=True) as admin:
        def stored_more_than(least: int) -> Callable[[], bool]:
            return lambda: (not worker.is_alive()
                            or stored_total(database_url, db_schema, topic) > least)

        for stored in (1000, 2000, 3000):  # terminate its backend three times while it writes
            wait_until(stored_more_than(stored), 120, f"more than {stored} events stored",
                       interval=0.02)
            if not worker.is_alive():
                break
            admin.execute("SELECT pg_terminate_backend(%s)", (projector.conn.info.backend_pid,))
            terminated += 1
    worker.join(timeout=120)
    assert terminated == 3 and not worker.is_alive()
    assert (projector.metrics.registry.get_sample_value("hwledger_projector_retries_total")
            or 0) >= 1
    assert stored_total(database_url, db_schema, topic) == 6000
    with connect(database_url, db_schema) as conn:
        row = conn.execute("SELECT count(*) FROM applied_events").fetchone()
    assert row is not None and row[0] == 6000


def test_processes_share_the_partitions_and_sigterm_stops_them_all(
        database_url: str, kafka_config: dict[str, Any], topic: str, schemas: tuple[str, str],
        log_messages: list[tuple[str, bytes]]) -> None:
    live, clean = schemas
    publish(kafka_config, topic, log_messages)
    proc = spawn(database_url, live, topic, kafka_config, f"processes-{topic}",
                 "--batch-size", "500", "--processes", "2")
    wait_until(lambda: stored_total(database_url, live, topic) == EVENTS, 120,
               "every event to be projected", interval=0.2)
    replicas = psutil.Process(proc.pid).children()
    with connect(database_url, live) as conn:
        backends = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchone()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr.decode()[-1500:]
    _, alive = psutil.wait_procs(replicas, timeout=15)
    assert replicas and alive == []
    assert backends is not None and backends[0] >= 2  # one connection per process
    assert_equals_clean_pass(database_url, live, clean, topic, kafka_config)


def ride_out_outage(database_url: str, schemas: tuple[str, str], kafka_config: dict[str, Any],
                    log_messages: list[tuple[str, bytes]], outage: Callable[[], None],
                    recover: Callable[[], None]) -> None:
    """Half the log is projecting when `outage` starts; a producer sends the other half
    during it; after 8 s `recover`. The projector must neither exit nor lose or repeat one."""
    live, clean = schemas
    topic = f"hwledger.outage.{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka_config, topic, 3)
    publish(kafka_config, topic, log_messages[:EVENTS // 2])
    proc = spawn(database_url, live, topic, kafka_config, f"outage-{topic}", "--batch-size", "500")
    wait_until(lambda: stored_total(database_url, live, topic) > 0, 60, "the first batch")
    outage()
    later = threading.Thread(target=publish, daemon=True,
                             args=(kafka_config, topic, log_messages[EVENTS // 2:]))
    later.start()
    time.sleep(8)
    assert proc.poll() is None
    recover()
    later.join(60)
    wait_until(lambda: stored_total(database_url, live, topic) == EVENTS, 120,
               "every event to be projected", interval=0.2)
    assert proc.poll() is None  # rode the outage out
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr.decode()[-1500:]
    assert_equals_clean_pass(database_url, live, clean, topic, kafka_config)


def test_frozen_broker_is_ridden_out_without_loss(
        database_url: str, schemas: tuple[str, str], tmp_path: Path,
        log_messages: list[tuple[str, bytes]]) -> None:
    """The broker process stops answering for 8 s (SIGSTOP), connections stay open."""
    port = free_port()
    broker = EmbeddedBroker(tmp_path / "broker.log").start(port)
    try:
        ride_out_outage(database_url, schemas, {"bootstrap.servers": f"127.0.0.1:{port}"},
                        log_messages, lambda: os.kill(broker, signal.SIGSTOP),
                        lambda: os.kill(broker, signal.SIGCONT))
    finally:
        os.kill(broker, signal.SIGCONT)
        stop_pid(broker)


def test_broker_restart_is_ridden_out_without_loss(
        database_url: str, schemas: tuple[str, str], tmp_path: Path,
        log_messages: list[tuple[str, bytes]]) -> None:
    """Every connection to the broker drops and new ones are turned away for 8 s, as in a
    restart (through `RestartingProxy`: the embedded broker itself would lose its log)."""
    port, proxy_port = free_port(), free_port()
    broker = EmbeddedBroker(tmp_path / "broker.log").start(port, advertised_port=proxy_port)
    proxy = RestartingProxy(proxy_port, port)
    proxy.start()
    try:
        ride_out_outage(database_url, schemas, {"bootstrap.servers": f"127.0.0.1:{proxy_port}"},
                        log_messages, lambda: proxy.restart(8), lambda: None)
        assert proxy.restarts == 1 and proxy.reconnects > 0  # clients did reconnect
    finally:
        proxy.close()
        stop_pid(broker)


def test_postgres_restart_is_retried_without_loss(
        kafka_config: dict[str, Any], topic: str, log_messages: list[tuple[str, bytes]]) -> None:
    """A PostgreSQL server of its own is stopped for 3 s and started again while the
    projector runs: it retries with backoff, reconnects and resumes; every event once."""
    workdir = Path(tempfile.mkdtemp(prefix="hwledger-test-pg-restart-"))
    server, port = EmbeddedPostgres(workdir / "data"), free_port()
    try:
        url = server.start(port)
        prepare_schema(url, "hwledger")
        publish(kafka_config, topic, log_messages[:6000])
        projector = Projector(projector_config(url, "hwledger", topic, kafka_config,
                                               batch_size=200, backoff_seconds=0.2))
        worker = threading.Thread(target=projector.run)
        worker.start()
        wait_until(lambda: stored_total(url, "hwledger", topic) >= 1000, 60,
                   "1000 events projected", interval=0.02)
        server.stop()
        time.sleep(3)
        server.start(port)
        worker.join(timeout=120)
        assert not worker.is_alive()
        assert (projector.metrics.registry.get_sample_value("hwledger_projector_retries_total")
                or 0) >= 1
        assert stored_total(url, "hwledger", topic) == 6000
        with connect(url, "hwledger") as conn:
            row = conn.execute("SELECT count(*) FROM applied_events").fetchone()
        assert row is not None and row[0] == 6000
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_serialization_failures_and_deadlocks_are_retried_then_given_up(
        database_url: str, db_schema: str, kafka_config: dict[str, Any], topic: str) -> None:
    """Postgres raises these under concurrent writers; they are injected here (the projector's
    READ COMMITTED batches rarely meet them) to check the policy: retried with backoff on a
    fresh connection, `max_retries` attempts at most, other errors not retried."""
    projector = Projector(projector_config(database_url, db_schema, topic, kafka_config,
                                           backoff_seconds=0.01, max_retries=3))
    try:
        failures: list[Exception] = [psycopg.errors.SerializationFailure("could not serialize"),
                                     psycopg.errors.DeadlockDetected("deadlock detected")]
        first_backend = projector.conn.info.backend_pid

        def flaky() -> str:
            if failures:
                raise failures.pop(0)
            return "applied"

        assert projector._with_retries(flaky) == "applied"
        assert projector.metrics.registry.get_sample_value(
            "hwledger_projector_retries_total") == 2
        assert projector.conn.info.backend_pid != first_backend  # reconnected

        def always() -> None:
            raise psycopg.errors.SerializationFailure("could not serialize")

        with pytest.raises(psycopg.errors.SerializationFailure):
            projector._with_retries(always)
        assert projector.metrics.registry.get_sample_value(
            "hwledger_projector_retries_total") == 4  # 2 more, then the 3rd attempt gave up

        def broken() -> None:
            raise ValueError("not transient")

        with pytest.raises(ValueError):
            projector._with_retries(broken)
        assert projector.metrics.registry.get_sample_value(
            "hwledger_projector_retries_total") == 4
    finally:
        projector.consumer.close()
        projector.conn.close()
