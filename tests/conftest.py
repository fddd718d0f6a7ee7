"""Shared fixtures. Integration tests (tests/integration) get real servers, once per session.

The run starts by removing every HWLEDGER_* setting but the HWLEDGER_TEST_* ones from the
environment, so neither the suite nor a command it starts reaches a server it was not given.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from hwledger.deploy.kafka_admin import ensure_topic
from hwledger.deploy.kafka_dist import has_java
from hwledger.schemas.db import connect
from hwledger.schemas.migrations import scratch_schema
from tests.servers import Servers, production_variables, session_servers

NO_JAVA = ("starts Apache Kafka, which needs Java 17+ on PATH (and Maven for its jars once); "
           "install them to run it, as CI does")


def pytest_configure(config: pytest.Config) -> None:
    for name in production_variables(os.environ):
        del os.environ[name]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    java = None
    for item in items:
        if "tests/integration" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("apache_kafka") is not None:
            item.add_marker(pytest.mark.slow)
            java = has_java() if java is None else java
            if not java:
                item.add_marker(pytest.mark.skip(reason=NO_JAVA))


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    """Real servers for the whole session. Their data lives outside pytest's numbered temp
    folders, which a concurrent pytest session may clean up while this one still runs."""
    workdir = Path(tempfile.mkdtemp(prefix="hwledger-test-servers-"))
    try:
        with session_servers(workdir) as found:
            yield found
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(servers: Servers) -> str:
    return servers.database_url


@pytest.fixture(scope="session")
def kafka_config(servers: Servers) -> dict[str, Any]:
    """librdkafka settings for the test broker."""
    return {"bootstrap.servers": servers.kafka_bootstrap}


@pytest.fixture
def db_schema(database_url: str) -> Iterator[str]:
    """A fresh, migrated and seeded Postgres schema, dropped after the test."""
    with scratch_schema(database_url, "t") as schema:
        yield schema


@pytest.fixture
def own_database(database_url: str) -> Iterator[str]:
    """A database of its own: the active-schema pointer is per database."""
    name = f"rebuild_{uuid.uuid4().hex[:10]}"
    with connect(database_url, None, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    with connect(database_url, None, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def db(database_url: str, db_schema: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose search_path is the test's fresh schema."""
    with connect(database_url, db_schema) as conn:
        yield conn


@pytest.fixture
def topic(kafka_config: dict[str, Any]) -> str:
    """A fresh topic with 3 partitions and infinite retention."""
    name = f"hwledger.test.{uuid.uuid4().hex[:12]}"
    ensure_topic(kafka_config, name, 3)
    return name


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty HWLEDGER_HOME for commands that keep state."""
    path = tmp_path / "home"
    path.mkdir()
    return path
