"""Helpers for the query service's integration tests: load data the real way and ask over HTTP.

`publish` sends events to Kafka (Avro via the codec, key = provider_id); `load` publishes and
projects them with the projector's `catch_up`; `fresh_schema` is a migrated, seeded schema
for tests that share one data set; `client` is an HTTP client over a QueryService whose clock
is fixed at event time so the online TTL is deterministic; `service_thread` runs the service under
uvicorn for clients outside the process (a browser, raw sockets).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

import uvicorn
from confluent_kafka import Producer
from fastapi.testclient import TestClient

from hwledger.deploy.local_processes import free_port
from hwledger.query.api import JsonErrorsProtocol, create_app
from hwledger.query.limits import Limits
from hwledger.query.service import SCHEMA_CACHE_SECONDS, QueryService, make_engine
from hwledger.schemas.codec import encode
from hwledger.schemas.events import EventData
from hwledger.schemas.migrations import scratch_schema
from hwledger.schemas.units import GiB
from tests.waiting import wait_until


def publish(kafka_config: dict[str, Any], topic: str, events: Sequence[EventData]) -> None:
    """Publish events in order, keyed by provider_id; waits until all are acknowledged."""
    producer = Producer({**kafka_config, "enable.idempotence": True, "acks": "all"})
    failures: list[str] = []

    def delivered(err: Any, _: Any) -> None:
        if err is not None:
            failures.append(str(err))

    for event_type, data in events:
        producer.produce(topic, key=str(data["provider_id"]).encode(),
                         value=encode(event_type, data), on_delivery=delivered)
        producer.poll(0)
    remaining = producer.flush(30)
    assert remaining == 0 and not failures, failures


def load(database_url: str, schema: str, kafka_config: dict[str, Any], topic: str,
         events: Sequence[EventData]) -> None:
    """Publish `events` and project the topic into `schema` until caught up."""
    from hwledger.projectors import catch_up

    publish(kafka_config, topic, events)
    catch_up(database_url, schema, kafka_config, topic)


def fresh_schema(database_url: str) -> AbstractContextManager[str]:
    """A migrated and seeded schema, dropped afterwards (for module-scoped data sets)."""
    return scratch_schema(database_url, "q")


@contextmanager
def schema_with(database_url: str, events: Sequence[EventData]) -> Iterator[str]:
    """A fresh schema holding `events`, applied by the projector's `apply_events` (no Kafka)."""
    from hwledger.projectors import apply_events
    from hwledger.schemas.db import connect

    with fresh_schema(database_url) as schema:
        with connect(database_url, schema) as conn:
            apply_events(conn, events)
            conn.commit()
        yield schema


@contextmanager
def client(database_url: str, schema: str | None, now: datetime, *,
           online_ttl_seconds: int = 900, max_wait_seconds: float = 0.5,
           schema_cache_seconds: float = SCHEMA_CACHE_SECONDS) -> Iterator[TestClient]:
    """An HTTP client over the query service; `schema=None` follows the active schema."""
    service = QueryService(make_engine(database_url, pool_size=2),
                           online_ttl_seconds=online_ttl_seconds, clock=lambda: now,
                           schema=schema, max_wait_seconds=max_wait_seconds,
                           schema_cache_seconds=schema_cache_seconds)
    try:
        with TestClient(create_app(service)) as found:
            yield found
    finally:
        service.engine.dispose()


@contextmanager
def service_thread(database_url: str, schema: str, now: datetime | None,
            limits: Limits | None = None) -> Iterator[str]:
    """The query service under uvicorn on a free port, in a thread: its base URL. Its clock is
    fixed at `now`, or the real one when None."""
    service = QueryService(make_engine(database_url, pool_size=4), schema=schema,
                           limits=limits or Limits(),
                           clock=(lambda: datetime.now(UTC)) if now is None else (lambda: now))
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1",
                                           port=free_port(), log_level="warning",
                                           http=JsonErrorsProtocol))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 20, "the query service to start",
               interval=0.02)
    assert thread.is_alive(), "the query service stopped while starting"
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)
        service.engine.dispose()


def owners(answer: dict[str, Any]) -> set[str]:
    return {p["owner"] for p in answer["providers"]}


def gpu_unit(units: int, *keys: str, count: int = 1, cpu: int = 1000,
             memory: int = GiB) -> dict[str, Any]:
    """One `resources[]` entry needing `units` GPUs matching any of the attribute keys."""
    return {"count": count, "resource": {
        "cpu": {"units": {"val": str(cpu)}}, "memory": {"quantity": {"val": str(memory)}},
        "gpu": {"units": {"val": str(units)},
                "attributes": [{"key": k, "value": "true"} for k in keys]}}}


def cpu_unit(cpu: int, *, count: int = 1, memory: int = GiB, ram_volume: int = 0,
             storage: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    volumes = list(storage)
    if ram_volume:
        volumes.append({"name": "shm", "quantity": {"val": str(ram_volume)},
                        "attributes": [{"key": "class", "value": "ram"}]})
    return {"count": count, "resource": {
        "cpu": {"units": {"val": str(cpu)}}, "memory": {"quantity": {"val": str(memory)}},
        "storage": volumes}}


def group_spec(*units: dict[str, Any], all_of: Sequence[str] = (), any_of: Sequence[str] = (),
               attributes: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": "test", "resources": list(units), "requirements": {
        "signedBy": {"allOf": list(all_of), "anyOf": list(any_of)},
        "attributes": [{"key": k, "value": v} for k, v in (attributes or {}).items()]}}


Screen = Callable[..., dict[str, Any]]


def screener(http: TestClient) -> Screen:
    """`screen(spec, **query)` -> the 200 JSON answer of POST /v1/bid-screening."""
    def screen(spec: dict[str, Any], **query: Any) -> dict[str, Any]:
        params = {k: str(v).lower() if isinstance(v, bool) else v for k, v in query.items()}
        response = http.post("/v1/bid-screening", json=spec, params=params)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer
    return screen
