"""Helpers for the projector's integration tests: publish, project, spawn, compare."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from hwledger.projectors.checksums import table_checksums
from hwledger.projectors.config import ProjectorConfig
from hwledger.projectors.metrics import Metrics
from hwledger.projectors.service import Projector
from hwledger.schemas import codec
from hwledger.schemas.db import connect
from hwledger.schemas.events import EventData
from hwledger.schemas.migrations import scratch_schema

FAST_GROUP = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500}

INVENTORY_DISAGREES_WITH_NODES = """
SELECT count(*) FROM provider_inventory i
WHERE i.gpu_models IS DISTINCT FROM (
    SELECT coalesce(array_agg(DISTINCT v.token ORDER BY v.token), '{}')
    FROM nodes n JOIN hardware_snapshots s ON s.event_id = n.current_snapshot_event_id
    JOIN system_gpu_link l USING (system_hardware_id) JOIN gpu_hardware g USING (gpu_hardware_id)
    CROSS JOIN LATERAL (VALUES (lower(g.vendor)), (lower(g.vendor || '/' || g.model))) v(token)
    WHERE n.provider_id = i.provider_id)
"""


def load_jsonl(path: Path) -> list[EventData]:
    events = []
    for line in path.read_text("utf-8").splitlines():
        item = json.loads(line)
        item["data"]["occurred_at"] = datetime.fromisoformat(item["data"]["occurred_at"])
        events.append((item["type"], item["data"]))
    return events


def publish(kafka_config: dict[str, Any], topic: str, messages: Iterable[tuple[str, bytes]]
            ) -> int:
    """Produce (key, value) pairs in order; returns how many were sent."""
    producer = Producer({**kafka_config, "enable.idempotence": True, "linger.ms": 20})
    sent = 0
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value, key=key)
                break
            except BufferError:
                producer.poll(0.1)
        sent += 1
        producer.poll(0)
    assert producer.flush(30) == 0
    return sent


def encoded(events: Iterable[EventData]) -> list[tuple[str, bytes]]:
    return [(str(data["provider_id"]), codec.encode(kind, data)) for kind, data in events]


def projector_config(database_url: str, schema: str, topic: str, kafka_config: dict[str, Any],
                     group: str | None = None, idle: float = 3.0, **extra: Any
                     ) -> ProjectorConfig:
    return ProjectorConfig(
        database_url=database_url, schema=schema, topic=topic,
        kafka={**kafka_config, **FAST_GROUP}, group_id=group or f"g-{uuid.uuid4().hex[:8]}",
        idle_exit_seconds=idle, park_ttl=timedelta(hours=6), exit_when_caught_up=True,
        **extra)


def project_all(database_url: str, schema: str, topic: str, kafka_config: dict[str, Any],
                **extra: Any) -> Metrics:
    """Project the whole topic in-process until it has been idle a while."""
    metrics = Metrics()
    Projector(projector_config(database_url, schema, topic, kafka_config, **extra),
              metrics).run()
    return metrics


def spawn(database_url: str, schema: str, topic: str, kafka_config: dict[str, Any],
          group: str, *args: str) -> subprocess.Popen[bytes]:
    """`hwledger project` as its own process (so it can be SIGKILLed or SIGTERMed)."""
    env = dict(os.environ, HWLEDGER_DATABASE_URL=database_url, HWLEDGER_DB_SCHEMA=schema,
               HWLEDGER_TOPIC=topic, HWLEDGER_KAFKA_BOOTSTRAP=kafka_config["bootstrap.servers"],
               HWLEDGER_METRICS_PORT="0", HWLEDGER_KAFKA_OPT_SESSION_TIMEOUT_MS="2000",
               HWLEDGER_KAFKA_OPT_HEARTBEAT_INTERVAL_MS="500")
    return subprocess.Popen(
        [sys.executable, "-m", "hwledger.deploy.cli", "project", "--group", group, *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_until_assigned(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Block until a `spawn`ed projector logged its first assignment: it has joined the group
    and installed its signal handlers (a SIGTERM before that ends it with -15, not 0)."""
    assigned = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if b"assigned" in line:
                assigned.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert assigned.wait(timeout), "the projector never got an assignment"


def fresh_schema(database_url: str) -> contextlib.AbstractContextManager[str]:
    """A migrated, seeded schema of its own, dropped afterwards."""
    return scratch_schema(database_url, "t")


def checksums(database_url: str, schema: str) -> dict[str, tuple[int, str]]:
    with connect(database_url, schema) as conn:
        return table_checksums(conn)


def stored_total(database_url: str, schema: str, topic: str) -> int:
    with connect(database_url, schema) as conn:
        row = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM projection_offsets "
                           "WHERE topic = %s", (topic,)).fetchone()
    return int(row[0]) if row else 0


class RestartingProxy(threading.Thread):
    """A TCP forwarder in front of the broker. `restart(seconds)` drops every connection and
    turns new ones away for that long, which is what clients see of a broker restart, while
    the broker behind it keeps its log (the embedded one keeps it in memory only)."""

    def __init__(self, port: int, target_port: int) -> None:
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", port))
        self.target_port = target_port
        self.down_until = 0.0
        self.restarts = 0
        self.reconnects = 0  # connections forwarded after the last restart
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if time.monotonic() < self.down_until:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.open += [client, upstream]
                self.reconnects += self.restarts > 0
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restart(self, seconds: float) -> None:
        self.down_until = time.monotonic() + seconds
        with self.lock:
            dropped, self.open = self.open, []
            self.restarts, self.reconnects = self.restarts + 1, 0
        for sock in dropped:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()
        self.restart(0)
