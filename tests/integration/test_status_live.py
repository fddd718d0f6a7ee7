"""`hwledger status` against the real embedded broker and Postgres.

The topic gets real records and the schema real projection bookkeeping rows, so the screen's lag
is high watermark minus stored next offset as the broker reports it. The query service is stood
in for by a stdlib HTTP server answering /healthz, first absent (exit 3), then present (exit 0).
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer

from hwledger.deploy.cli import main
from hwledger.deploy.localstack import free_port
from tests.servers import Servers


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def healthz_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


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
                                     healthz_port: int, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _produce(servers.kafka_bootstrap, topic, {0: 5, 1: 2})
    db.execute("INSERT INTO projection_offsets VALUES ('live', %s, 0, 3, %s), "
               "('live', %s, 1, 2, %s), ('rebuild', %s, 2, 0, NULL)",
               (topic, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), topic,
                datetime(2026, 1, 1, tzinfo=UTC), topic))
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

    code, out = _status(monkeypatch, capsys, healthz_port)
    assert code == 0, out
    lines = [line.strip("│ ") for line in out.splitlines()]
    for expected in (
        f"topic {topic}: 3 partitions",
        "projector lag │ ok    │ 2 events behind (projection 'live')",
        "partition 0 │ ok    │ lag 2 (next offset 3, high watermark 5)",
        "partition 1 │ ok    │ lag 0 (next offset 2, high watermark 2)",
        "partition 2 │ ok    │ lag 0 (no offset stored, high watermark 0)",
        "dead letters  │ warn  │ 1",
        "parked events │ ok    │ 0",
        "last event    │ ok    │ 2026-01-02T03:04:05+00:00",
        f"active schema │ ok    │ hwledger (this status reads {db_schema})",
        f"query service │ ok    │ http://127.0.0.1:{healthz_port}/healthz: HTTP 200",
    ):
        assert any(expected in line for line in lines), (expected, out)
