"""The projection's vocabulary: log records, decoded events, the stored state a batch reads
and the Plan of row changes it writes, and the outcome of one event's handler.

Pure data; `projection.project` fills a Plan, `writer.Writer` loads a State and applies a Plan.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from hwledger.projectors.rows import (
    AppliedEvent,
    GpuHardware,
    HardwareSnapshot,
    Provider,
    ProviderAudit,
    Run,
    RunFinish,
    RunGpuUsage,
    RunHardwareMetrics,
    SystemGpuLink,
    SystemHardware,
    SystemSoftware,
)
from hwledger.schemas import codec
from hwledger.schemas.events import (
    Event,
    typed,
)


@dataclass(frozen=True, slots=True)
class Record:
    """One message of the log (or one parked / dead-lettered copy of it)."""

    topic: str
    partition: int
    offset: int
    raw: bytes
    parked_id: int | None = None


@dataclass(frozen=True, slots=True)
class Decoded:
    """A record with its decoded event, or the reason it cannot be decoded or was refused
    (`error`, with or without the event)."""

    record: Record
    event: Event | None
    error: str | None = None

    @property
    def event_id(self) -> str | None:
        return None if self.event is None else str(self.event.event_id)

    @property
    def provider_id(self) -> str | None:
        return None if self.event is None else str(self.event.provider_id)


@dataclass(frozen=True)
class KnownSnapshot:
    provider_id: str
    node_id: str
    slots: frozenset[int]
    system_hardware_id: str
    system_software_id: str


@dataclass
class KnownRun:
    node_id: str
    status: str | None
    first_slot: int | None
    system_hardware_id: str
    system_software_id: str
    started_event_id: str


@dataclass
class Pending:
    """A parked event: waiting for `waiting_for` ("snapshot <id>" or "run <id>" of the event's
    provider)."""

    decoded: Decoded
    waiting_for: str
    occurred_at: datetime


@dataclass
class State:
    """What the batch needs from the stored read model; `project` updates it as it goes."""

    applied: set[str] = field(default_factory=set)
    snapshots: dict[str, KnownSnapshot] = field(default_factory=dict)
    runs: dict[tuple[str, str], KnownRun] = field(default_factory=dict)
    """(provider_id, run_id) -> the run: a run id is its provider's name for the run."""
    parked: dict[str, list[Pending]] = field(default_factory=dict)

    def parked_event_ids(self) -> set[str]:
        return {p.decoded.event_id or "" for pending in self.parked.values() for p in pending}


@dataclass(frozen=True)
class References:
    """Stored state a batch refers to: event ids, snapshot ids (those referenced and the
    batch's own snapshots), runs (provider_id, run_id) and providers."""

    event_ids: frozenset[str]
    snapshot_ids: frozenset[str]
    runs: frozenset[tuple[str, str]]
    providers: frozenset[str]


@dataclass(frozen=True)
class DeadLetter:
    record: Record
    reason: str
    event_type: str | None
    event_id: str | None


@dataclass
class NodeRow:
    provider_id: str
    node_id: str
    snapshot_event_id: str
    occurred_at: datetime
    first_seen_at: datetime
    last_seen_at: datetime


@dataclass
class Plan:
    """Row changes of one batch, in the shapes the writer's statements take. `touched`: the
    providers whose inventory row the batch changes; `last_seen` / `first_seen`: the newest /
    oldest own fact of each provider that has one in the batch; `node_seen`: the newest
    heartbeat of each node that has one."""

    gpu_hardware: dict[str, GpuHardware] = field(default_factory=dict)
    system_hardware: dict[str, SystemHardware] = field(default_factory=dict)
    system_gpu_links: dict[tuple[str, int], SystemGpuLink] = field(default_factory=dict)
    system_software: dict[str, SystemSoftware] = field(default_factory=dict)
    snapshots: list[HardwareSnapshot] = field(default_factory=list)
    nodes: dict[tuple[str, str], NodeRow] = field(default_factory=dict)
    node_seen: dict[tuple[str, str], datetime] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    run_gpu_usage: list[RunGpuUsage] = field(default_factory=list)
    run_finishes: list[RunFinish] = field(default_factory=list)
    run_metrics: list[RunHardwareMetrics] = field(default_factory=list)
    providers: dict[str, Provider] = field(default_factory=dict)
    audits: dict[tuple[str, str], ProviderAudit] = field(default_factory=dict)
    applied: list[AppliedEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    unparked: list[int] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    last_seen: dict[str, datetime] = field(default_factory=dict)
    first_seen: dict[str, datetime] = field(default_factory=dict)
    projected: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    newly_parked: list[Pending] = field(default_factory=list)


def decode(record: Record) -> Decoded:
    try:
        return Decoded(record, typed(codec.decode(record.raw)))
    except codec.DecodeError as exc:
        return Decoded(record, None, exc.reason)


def decode_all(records: Iterable[Record]) -> list[Decoded]:
    return [decode(r) for r in records]


class Result(Enum):
    """A handler's outcome that needs no value."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    """Already stored under its event id."""


@dataclass(frozen=True, slots=True)
class Parked:
    """A handler's outcome for an event whose reference is not known yet."""

    waiting_for: str
    """"snapshot <event id>" or "run <run id>" of the event's provider."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A handler's outcome for an event that cannot be applied: a dead letter."""

    reason: str


Outcome = Result | Parked | Refused


Fence = Mapping[tuple[str, int], tuple[int | None, int]]
"""(topic, partition) -> (stored next_offset the batch started from, next_offset after it)."""
