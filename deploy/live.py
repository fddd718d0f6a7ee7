"""The whole system in one process, for `hwledger demo` and `hwledger bench soak`.

`live_system` brings up the servers (the configured ones, else the embedded local stack),
creates the topic, migrates and seeds, grants the query service's read-only role (which the
query service then connects as), then runs a projector and the HTTP query service in
background threads until the block exits. Production runs them as separate processes
(`hwledger project`, `hwledger serve`); here one process keeps the demo a single command.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import uvicorn

from hwledger.deploy.commands.query import service_for
from hwledger.deploy.config import Settings
from hwledger.deploy.kafka_admin import ensure_topic
from hwledger.deploy.local_processes import free_port
from hwledger.deploy.localstack import LocalStack
from hwledger.projectors.config import ProjectorConfig
from hwledger.projectors.service import Projector
from hwledger.query.api import JsonErrorsProtocol, create_app
from hwledger.schemas.db import DEFAULT_SCHEMA, connect
from hwledger.schemas.errors import UserError
from hwledger.schemas.migrations import prepare_schema
from hwledger.schemas.roles import prepare_query_role


@dataclass(frozen=True)
class LiveSystem:
    """Where the running system can be reached."""

    settings: Settings
    database_url: str
    schema: str
    query_url: str

    def post(self, path: str, body: Any, timeout: float = 10.0) -> Any:
        """POST JSON to the query service and return the decoded answer."""
        return self._call(urllib.request.Request(
            self.query_url + path, data=json.dumps(body).encode(), method="POST",
            headers={"content-type": "application/json"}), timeout)

    def get(self, path: str, timeout: float = 5.0) -> Any:
        """GET from the query service and return the decoded answer."""
        return self._call(urllib.request.Request(self.query_url + path), timeout)

    @staticmethod
    def _call(request: urllib.request.Request, timeout: float) -> Any:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def applied_events(self) -> int:
        """Events the projector has applied or dead-lettered so far."""
        with connect(self.database_url, self.schema) as conn:
            row = conn.execute("SELECT (SELECT count(*) FROM applied_events) + "
                               "(SELECT count(*) FROM dead_letters)").fetchone()
        return int(row[0]) if row else 0

    def wait_for_events(self, count: int, timeout: float = 60.0) -> None:
        """Block until at least `count` events are projected, or raise UserError."""
        deadline = time.monotonic() + timeout
        while (seen := self.applied_events()) < count:
            if time.monotonic() > deadline:
                raise UserError(f"the projector applied {seen} of {count} events within "
                                f"{timeout:g}s; see `hwledger status` and `hwledger dlq list`")
            time.sleep(0.1)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


@contextlib.contextmanager
def _servers(settings: Settings) -> Iterator[Settings]:
    """The configured servers, else the local stack (stopped again if we started it)."""
    if settings.database_url and settings.kafka_bootstrap:
        yield settings
        return
    stack = LocalStack(settings.home)
    already_running = stack.status()["postgres"]["running"]
    info = stack.up(broker=settings.broker)
    try:
        yield replace(settings, database_url=info.database_url,
                      query_database_url=info.query_database_url,
                      kafka_bootstrap=info.kafka_bootstrap)
    finally:
        if not already_running:
            stack.down()


@contextlib.contextmanager
def _thread(target: Any, name: str) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    yield thread


@contextlib.contextmanager
def live_system(settings: Settings, *, group_id: str = "hwledger-projector",
                projector_kafka: dict[str, Any] | None = None) -> Iterator[LiveSystem]:
    """Servers, topic, schema, a projector thread and the HTTP query service, until exit."""
    with _servers(settings) as resolved:
        database_url = resolved.require_database_url()
        schema = resolved.db_schema or DEFAULT_SCHEMA
        ensure_topic(resolved.kafka_config(), resolved.topic, resolved.partitions)
        prepare_schema(database_url, schema)
        prepare_query_role(database_url, schema, resolved.query_database_url)
        projector = Projector(ProjectorConfig(
            database_url=database_url, schema=schema, topic=resolved.topic,
            kafka=resolved.kafka_config(**(projector_kafka or {})), group_id=group_id,
            batch_seconds=0.05, auditor_keys=resolved.auditor_keys()))
        host = resolved.http_host
        port = resolved.http_port if _port_free(host, resolved.http_port) else free_port()
        resolved.checked_query_database_url()
        service = service_for(resolved)
        server = uvicorn.Server(uvicorn.Config(
            create_app(service), host=host, port=port, log_level="warning", access_log=False,
            http=JsonErrorsProtocol))
        with _thread(projector.run, "projector") as projector_thread, \
                _thread(server.run, "query") as server_thread:
            try:
                while not server.started:
                    if not server_thread.is_alive():
                        raise UserError(f"the query service could not start on {host}:{port}")
                    time.sleep(0.05)
                yield LiveSystem(resolved, database_url, schema, f"http://{host}:{port}")
            finally:
                server.should_exit = True
                projector.stop()
                server_thread.join(10)
                projector_thread.join(30)
                service.engine.dispose()
