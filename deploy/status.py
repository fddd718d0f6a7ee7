"""What `hwledger status` shows: the live stack gathered part by part, then turned into rows.

Three parts are gathered independently (the broker and the topic's watermarks, the read model's
projection bookkeeping, the query service's /healthz); a part that cannot be reached becomes
`Unreachable(reason)` instead of an error. The pure functions (`partition_lag`, `health_url`,
`rows`, `exit_code`) turn those plain values into the screen and the exit code.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg
from confluent_kafka import Consumer, KafkaException, TopicPartition

from hwledger.deploy.config import Settings
from hwledger.deploy.kafka_admin import check_broker
from hwledger.deploy.localstack import LocalStack
from hwledger.projectors.logcheck import RECOVERY, log_start_gaps
from hwledger.projectors.offsets import PROJECTION
from hwledger.schemas.db import connect, use_schema
from hwledger.schemas.errors import UserError
from hwledger.schemas.migrations import active_schema
from hwledger.schemas.secrets import redact

BROKER_TIMEOUT_S = 3.0
HEALTH_TIMEOUT_S = 2.0
DATABASE_TIMEOUT_S = 3

State = Literal["ok", "warn", "down"]


@dataclass(frozen=True)
class Unreachable:
    """A part that could not be read, with a one-line reason."""

    reason: str


@dataclass(frozen=True)
class BrokerState:
    """The topic as the broker sees it: (low, high) watermark per partition."""

    bootstrap: str
    topic: str
    watermarks: dict[int, tuple[int, int]]
    engine: str = ""
    """The broker and whether its log is durable, when hwledger started it (the local stack)."""


@dataclass(frozen=True)
class ReadModelState:
    """The projection's bookkeeping in the schema it writes."""

    database: str
    active_schema: str
    schema: str
    projection: str
    next_offsets: dict[int, int]
    last_event_at: datetime | None
    dead_letters: int
    parked_events: int
    halted: dict[int, str] = field(default_factory=dict)
    """Partitions the projector stopped (lost log), with the reason."""


@dataclass(frozen=True)
class QueryHealth:
    """What the query service's /healthz answered."""

    url: str
    status: int


@dataclass(frozen=True)
class StatusReport:
    broker: BrokerState | Unreachable
    read_model: ReadModelState | Unreachable
    query: QueryHealth | Unreachable


@dataclass(frozen=True)
class Row:
    """One line of the status screen."""

    part: str
    state: State
    detail: str


def partition_lag(watermarks: Mapping[int, tuple[int, int]],
                  next_offsets: Mapping[int, int]) -> dict[int, int]:
    """Events per partition the projection has not applied yet (high watermark - next offset).

    A partition without a stored offset starts at its low watermark.
    """
    return {
        partition: max(0, high - max(next_offsets.get(partition, low), low))
        for partition, (low, high) in sorted(watermarks.items())
    }


def health_url(host: str, port: int) -> str:
    """The /healthz URL for a bind address: a wildcard bind is asked on loopback."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def _down(part: str, reason: str) -> Row:
    return Row(part, "down", f"unreachable: {reason}")


def _broker_rows(broker: BrokerState | Unreachable) -> list[Row]:
    if isinstance(broker, Unreachable):
        return [_down("broker", broker.reason)]
    count = len(broker.watermarks)
    engine = f" ({broker.engine})" if broker.engine else ""
    return [Row("broker", "ok",
                f"{broker.bootstrap}{engine}, topic {broker.topic}: {count} partitions")]


def _lag_rows(broker: BrokerState | Unreachable,
              read_model: ReadModelState | Unreachable) -> list[Row]:
    if isinstance(broker, Unreachable):
        return [_down("projector lag", "the broker is down (see above)")]
    if isinstance(read_model, Unreachable):
        return [_down("projector lag", "the database is down (see above)")]
    lag = partition_lag(broker.watermarks, read_model.next_offsets)
    rows = [Row("projector lag", "ok",
                f"{sum(lag.values())} events behind (projection {read_model.projection!r})")]
    lost = {**log_start_gaps(broker.watermarks, read_model.next_offsets), **read_model.halted}
    for partition, reason in sorted(lost.items()):
        rows.append(Row("log lost", "down", f"{reason}; {RECOVERY.format(partition=partition)}"))
    for partition, behind in lag.items():
        high = broker.watermarks[partition][1]
        stored = read_model.next_offsets.get(partition)
        position = "no offset stored" if stored is None else f"next offset {stored}"
        rows.append(Row(f"  partition {partition}", "ok",
                        f"lag {behind} ({position}, high watermark {high})"))
    return rows


def _database_rows(read_model: ReadModelState | Unreachable) -> list[Row]:
    if isinstance(read_model, Unreachable):
        return [_down("database", read_model.reason)]
    return [Row("database", "ok", read_model.database)]


def _read_model_rows(read_model: ReadModelState | Unreachable) -> list[Row]:
    parts = ("dead letters", "parked events", "last event", "active schema")
    if isinstance(read_model, Unreachable):
        return [_down(part, "the database is down (see above)") for part in parts]
    if read_model.last_event_at is not None:
        last = read_model.last_event_at.isoformat(timespec="seconds")
    else:
        last = "not recorded by the projector" if read_model.next_offsets else "none yet"
    active = read_model.active_schema
    if read_model.schema != active:
        active += f" (this status reads {read_model.schema})"
    return [
        Row("dead letters", "warn" if read_model.dead_letters else "ok",
            str(read_model.dead_letters)),
        Row("parked events", "warn" if read_model.parked_events else "ok",
            str(read_model.parked_events)),
        Row("last event", "ok", last),
        Row("active schema", "ok", active),
    ]


def _query_rows(query: QueryHealth | Unreachable) -> list[Row]:
    if isinstance(query, Unreachable):
        return [_down("query service", query.reason)]
    if 200 <= query.status < 300:
        return [Row("query service", "ok", f"{query.url}: HTTP {query.status}")]
    return [Row("query service", "down", f"unhealthy: {query.url}: HTTP {query.status}")]


def rows(report: StatusReport) -> list[Row]:
    """The whole screen, top to bottom."""
    return [
        *_broker_rows(report.broker),
        *_database_rows(report.read_model),
        *_lag_rows(report.broker, report.read_model),
        *_read_model_rows(report.read_model),
        *_query_rows(report.query),
    ]


def exit_code(report: StatusReport) -> int:
    """0 when every part was reachable and healthy, 3 otherwise (as `hwledger dev status`)."""
    return 3 if any(row.state == "down" for row in rows(report)) else 0


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
