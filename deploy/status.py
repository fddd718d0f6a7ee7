"""What `hwledger status` shows: the parts of the live stack as plain values, and the pure
functions (`partition_lag`, `health_url`, `rows`, `exit_code`) that turn them into the screen
and the exit code. `status_gather` reads the parts; one that cannot be reached is
`Unreachable(reason)` instead of an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from hwledger.projectors.logcheck import RECOVERY, log_start_gaps

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
