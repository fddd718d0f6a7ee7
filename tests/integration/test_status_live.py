"""`hwledger status` against the real embedded broker and Postgres.

The topic gets real records and the schema real projection bookkeeping rows, so the screen's lag
is high watermark minus stored next offset as the broker reports it. The query service is the
real app under uvicorn: first absent (exit 3), then serving (exit 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer

from hwledger.deploy.cli import main
from hwledger.deploy.local_processes import free_port
from hwledger.projectors.offsets import PROJECTION
from tests.integration.query_support import service_thread
from tests.servers import Servers


@pytest.fixture
def query_port(database_url: str, db_schema: str) -> Iterator[int]:
    """The real query service on a free port, in a thread."""
    with service_thread(database_url, db_schema, now=None) as base:
        yield int(base.rsplit(":", 1)[1])


def _produce(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    """One record per batch: Tansu reports a high watermark of (last batch's base offset + 1)."""
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    for partition, count in per_partition.items():
        for i in range(count):
            producer.produce(topic, value=b"x", key=f"p{i}".encode(), partition=partition)
            assert producer.flush(10) == 0


def _status(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            http_port: int) -> tuple[int, str]:
    monkeypatch.setenv("HWLEDGER_HTTP_PORT", str(http_port))
    code = main(["status"])
    return code, capsys.readouterr().out


def test_status_shows_the_live_stack(servers: Servers, db: psycopg.Connection[Any],
                                     db_schema: str, topic: str, home: Path,
                                     query_port: int, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _produce(servers.kafka_bootstrap, topic, {0: 5, 1: 2})
    db.execute("INSERT INTO projection_offsets VALUES (%s, %s, 0, 3, %s), "
               "(%s, %s, 1, 2, %s), ('another', %s, 2, 0, NULL)",
               (PROJECTION, topic, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                PROJECTION, topic, datetime(2026, 1, 1, tzinfo=UTC), topic))
    db.execute("INSERT INTO dead_letters (topic, partition, \"offset\", raw, reason) "
               "VALUES (%s, 0, 1, '\\x00', 'undecodable')", (topic,))
    db.commit()
    for name, value in {"HWLEDGER_HOME": str(home), "HWLEDGER_DATABASE_URL": servers.database_url,
                        "HWLEDGER_KAFKA_BOOTSTRAP": servers.kafka_bootstrap,
                        "HWLEDGER_TOPIC": topic, "HWLEDGER_DB_SCHEMA": db_schema,
                        "HWLEDGER_HTTP_HOST": "127.0.0.1", "COLUMNS": "160"}.items():
        monkeypatch.setenv(name, value)

    code, out = _status(monkeypatch, capsys, free_port())
    assert code == 3
    assert "query service │ down  │ unreachable: http://127.0.0.1:" in out

    monkeypatch.setenv("HWLEDGER_TOPIC", f"{topic}.missing")
    code, out = _status(monkeypatch, capsys, query_port)
    assert code == 3 and f"unreachable: topic '{topic}.missing' does not exist" in out
    monkeypatch.setenv("HWLEDGER_TOPIC", topic)

    code, out = _status(monkeypatch, capsys, query_port)
    assert code == 0, out
    lines = [line.strip("│ ") for line in out.splitlines()]
    for expected in (
        f"topic {topic}: 3 partitions",
        f"projector lag │ ok    │ 2 events behind (projection {PROJECTION!r})",
        "partition 0 │ ok    │ lag 2 (next offset 3, high watermark 5)",
        "partition 1 │ ok    │ lag 0 (next offset 2, high watermark 2)",
        "partition 2 │ ok    │ lag 0 (no offset stored, high watermark 0)",
        "dead letters  │ warn  │ 1",
        "parked events │ ok    │ 0",
        "last event    │ ok    │ 2026-01-02T03:04:05+00:00",
        f"active schema │ ok    │ hwledger (this status reads {db_schema})",
        f"query service │ ok    │ http://127.0.0.1:{query_port}/healthz: HTTP 200",
    ):
        assert any(expected in line for line in lines), (expected, out)
