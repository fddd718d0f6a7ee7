"""Reading the live stack for `hwledger status`: the broker and the topic's watermarks, the read
model's projection bookkeeping, the query service's /healthz, each on its own timeout and read
concurrently; a part that cannot be reached becomes `status.Unreachable(reason)`.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaException, TopicPartition

from hwledger.deploy.config import Settings
from hwledger.deploy.kafka_admin import check_broker
from hwledger.deploy.localstack import LocalStack
from hwledger.deploy.status import (
    BrokerState,
    QueryHealth,
    ReadModelState,
    StatusReport,
    Unreachable,
    health_url,
)
from hwledger.projectors.offsets import PROJECTION
from hwledger.schemas.db import connect, use_schema
from hwledger.schemas.errors import UserError
from hwledger.schemas.migrations import active_schema
from hwledger.schemas.secrets import redact

BROKER_TIMEOUT_S = 3.0
HEALTH_TIMEOUT_S = 2.0
DATABASE_TIMEOUT_S = 3


def gather_broker(settings: Settings, timeout: float = BROKER_TIMEOUT_S
                  ) -> BrokerState | Unreachable:
    """Partitions and watermarks of the configured topic."""
    try:
        config = settings.kafka_config()
        metadata = check_broker(config, timeout)
    except UserError as exc:
        return Unreachable(str(exc))
    topic = metadata.topics.get(settings.topic)
    if topic is None or topic.error is not None or not topic.partitions:
        return Unreachable(f"topic {settings.topic!r} does not exist on {settings.kafka_bootstrap}"
                           " (HWLEDGER_TOPIC); create it as docs/operations.md says")
    consumer = Consumer({**config, "group.id": "hwledger-status", "enable.auto.commit": False,
                         "log_level": 0})
    try:
        watermarks = {
            partition: consumer.get_watermark_offsets(TopicPartition(settings.topic, partition),
                                                      timeout=timeout)
            for partition in sorted(topic.partitions)
        }
    except KafkaException as exc:
        return Unreachable(f"cannot read watermarks of {settings.topic!r}: {exc}")
    finally:
        consumer.close()
    return BrokerState(settings.kafka_bootstrap or "", settings.topic,
                       {p: (int(low), int(high)) for p, (low, high) in watermarks.items()},
                       local_engine(settings))


def local_engine(settings: Settings) -> str:
    """The local stack's broker label when the configured bootstrap is the local stack's."""
    info = LocalStack(settings.home).read()
    if info is None or info.kafka_bootstrap != settings.kafka_bootstrap:
        return ""
    return info.broker_label()


def status_database(settings: Settings) -> tuple[str, str]:
    """The database URL status reads and its setting's name: status only reads, so the query
    service's (possibly read-only) URL serves where no read-write one is set."""
    if settings.database_url:
        return settings.database_url, "HWLEDGER_DATABASE_URL"
    return settings.require_query_database_url(), "HWLEDGER_QUERY_DATABASE_URL"


def _read_model(conn: psycopg.Connection[Any], database: str, settings: Settings,
                projection: str) -> ReadModelState | Unreachable:
    active = active_schema(conn)
    schema = settings.db_schema or active
    use_schema(conn, schema)
    try:
        offsets = conn.execute(
            "SELECT partition, next_offset, last_event_at, halted_reason FROM projection_offsets "
            "WHERE projection = %s AND topic = %s", (projection, settings.topic)).fetchall()
        dead = conn.execute("SELECT count(*) FROM dead_letters WHERE topic = %s",
                            (settings.topic,)).fetchone()
        parked = conn.execute("SELECT count(*) FROM parked_events WHERE topic = %s",
                              (settings.topic,)).fetchone()
    except psycopg.errors.UndefinedTable:
        return Unreachable(f"schema {schema!r} has no hwledger tables; run `hwledger db migrate`")
    return ReadModelState(
        database=database, active_schema=active, schema=schema, projection=projection,
        next_offsets={int(p): int(n) for p, n, _, _ in offsets},
        last_event_at=max((at for _, _, at, _ in offsets if at is not None), default=None),
        dead_letters=int(dead[0]) if dead else 0,
        parked_events=int(parked[0]) if parked else 0,
        halted={int(p): str(h) for p, _, _, h in offsets if h is not None},
    )


def gather_read_model(settings: Settings, projection: str = PROJECTION
                      ) -> ReadModelState | Unreachable:
    """Stored offsets, last event time and problem counts of `projection` for the topic."""
    try:
        url, setting = status_database(settings)
        with connect(url, None, connect_timeout=DATABASE_TIMEOUT_S, setting=setting) as conn:
            return _read_model(conn, redact(url), settings, projection)
    except UserError as exc:
        return Unreachable(str(exc))
    except psycopg.Error as exc:
        message = str(exc).strip()
        return Unreachable(message.splitlines()[0] if message else type(exc).__name__)


def gather_query_health(settings: Settings, timeout: float = HEALTH_TIMEOUT_S
                        ) -> QueryHealth | Unreachable:
    """GET /healthz of the query service at HWLEDGER_HTTP_HOST:HWLEDGER_HTTP_PORT."""
    url = health_url(settings.http_host, settings.http_port)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return QueryHealth(url, int(response.status))
    except urllib.error.HTTPError as exc:
        return QueryHealth(url, int(exc.code))
    except urllib.error.URLError as exc:
        return Unreachable(f"{url}: {exc.reason}")
    except (TimeoutError, OSError) as exc:
        return Unreachable(f"{url}: {exc or 'no answer'} (timeout {timeout:g}s)")


def gather(settings: Settings, projection: str = PROJECTION) -> StatusReport:
    """All three parts, read concurrently so one slow part costs its own timeout only."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        broker = pool.submit(gather_broker, settings)
        read_model = pool.submit(gather_read_model, settings, projection)
        query = pool.submit(gather_query_health, settings)
        return StatusReport(broker.result(), read_model.result(), query.result())
