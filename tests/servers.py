"""The servers tests talk to: named for tests by the environment, embedded, or testcontainers.

- HWLEDGER_TEST_DATABASE_URL / HWLEDGER_TEST_KAFKA_BOOTSTRAP set: those servers are used as
  they are. The production variables (HWLEDGER_DATABASE_URL, ...) never name a test server.
- HWLEDGER_TEST_BACKEND=docker: Postgres and Apache Kafka containers via testcontainers.
- otherwise: the embedded PostgreSQL and a broker started once per test session:
  HWLEDGER_TEST_BROKER=kafka (Apache Kafka, KRaft, one node) or tansu; unset, Apache Kafka when
  Java 17+ is on PATH, else Tansu (the same rule as `hwledger dev up`).

`kafka_cluster` starts an Apache Kafka cluster of its own (three nodes for fault tests).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from hwledger.deploy.kafka_broker import ApacheKafkaBroker, KafkaCluster
from hwledger.deploy.kafka_dist import has_java
from hwledger.deploy.local_postgres import EmbeddedPostgres
from hwledger.deploy.local_processes import free_port, stop_pid
from hwledger.deploy.localstack import choose_broker
from hwledger.deploy.tansu_broker import EmbeddedBroker


@dataclass(frozen=True)
class Servers:
    database_url: str
    kafka_bootstrap: str


TEST_DATABASE_URL = "HWLEDGER_TEST_DATABASE_URL"
TEST_KAFKA_BOOTSTRAP = "HWLEDGER_TEST_KAFKA_BOOTSTRAP"


def named_servers(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The database URL and bootstrap servers named for tests, None where none is named."""
    return environ.get(TEST_DATABASE_URL) or None, environ.get(TEST_KAFKA_BOOTSTRAP) or None


def production_variables(environ: Mapping[str, str]) -> list[str]:
    """The HWLEDGER_* settings a test run must not see: all but the HWLEDGER_TEST_* ones."""
    return [name for name in environ
            if name.startswith("HWLEDGER_") and not name.startswith("HWLEDGER_TEST_")]


@contextlib.contextmanager
def docker_servers() -> Iterator[Servers]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16", driver=None) as pg, \
            KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft() as kafka:
        yield Servers(pg.get_connection_url(), kafka.get_bootstrap_server())


@contextlib.contextmanager
def embedded_postgres(workdir: Path) -> Iterator[str]:
    server = EmbeddedPostgres(workdir / "postgres" / "data")
    try:
        yield server.start(free_port())
    finally:
        server.stop()


@contextlib.contextmanager
def embedded_broker(workdir: Path, port: int | None = None) -> Iterator[str]:
    broker = EmbeddedBroker(workdir / "broker.log")
    port = port or free_port()
    pid = broker.start(port)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop_pid(pid)


@contextlib.contextmanager
def apache_kafka(workdir: Path) -> Iterator[str]:
    broker = ApacheKafkaBroker(workdir / "kafka")
    port = free_port()
    pid = broker.start(port, free_port())
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop_pid(pid, timeout=30)


@contextlib.contextmanager
def kafka_cluster(workdir: Path, size: int = 3) -> Iterator[KafkaCluster]:
    """A started Apache Kafka cluster of `size` nodes under `workdir`, stopped afterwards."""
    cluster = KafkaCluster(workdir / "kafka-cluster", [free_port() for _ in range(size)],
                           [free_port() for _ in range(size)])
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def broker_under_test() -> str:
    """The broker the tests start: HWLEDGER_TEST_BROKER, else as `choose_broker` picks."""
    return choose_broker(os.environ.get("HWLEDGER_TEST_BROKER") or None, has_java())[0]


def session_broker(workdir: Path) -> contextlib.AbstractContextManager[str]:
    """The broker `broker_under_test` names, started for the session."""
    if broker_under_test() == "kafka":
        return apache_kafka(workdir)
    return embedded_broker(workdir)


@contextlib.contextmanager
def session_servers(workdir: Path) -> Iterator[Servers]:
    if os.environ.get("HWLEDGER_TEST_BACKEND") == "docker":
        with docker_servers() as servers:
            yield servers
        return
    named_database, named_bootstrap = named_servers(os.environ)
    with contextlib.ExitStack() as stack:
        database_url = named_database or stack.enter_context(embedded_postgres(workdir))
        bootstrap = named_bootstrap or stack.enter_context(session_broker(workdir))
        yield Servers(database_url, bootstrap)
