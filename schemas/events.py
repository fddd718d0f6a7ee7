"""Typed events: one immutable type per Avro event schema, built once from the codec's datum.

`typed(datum)` turns what `codec.decode` reads (an event type name and its fields, as read with
the newest schema of that type) into an instance of the event's type; the fields of each type
are the fields of the newest schema (a test keeps the two equal). Nested records (a snapshot's
system, GPUs, storage; a run's resources; attributes) stay read-only mappings as Avro reads
them. `fields()` gives the event back as a mapping for the checks that read one
(`validation`, `signatures`).

A HardwareSnapshotted decoded through the codec's content cache carries `content`: the writer
fingerprint plus the encoded fields after the envelope, equal for snapshots that differ only in
their envelope (the key of the projection's memo of a snapshot's rows). It is no Avro field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar

from hwledger.schemas.codec import Datum

Attributes = Sequence[Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class _Envelope:
    """The fields every event has."""

    event_type: ClassVar[str]
    event_id: str
    occurred_at: datetime
    provider_id: str

    def fields(self) -> dict[str, Any]:
        """The event's Avro fields by name."""
        return {name: getattr(self, name) for name in AVRO_FIELDS[self.event_type]}


@dataclass(frozen=True, slots=True)
class HardwareSnapshotted(_Envelope):
    event_type: ClassVar[str] = "HardwareSnapshotted"
    producer: Mapping[str, Any]
    node_id: str
    system: Mapping[str, Any]
    software: Mapping[str, Any]
    gpus: Sequence[Mapping[str, Any]]
    allocatable: Mapping[str, Any]
    storage: Sequence[Mapping[str, Any]]
    content: bytes | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class NodeHeartbeated(_Envelope):
    event_type: ClassVar[str] = "NodeHeartbeated"
    node_id: str
    snapshot_event_id: str


@dataclass(frozen=True, slots=True)
class RunStarted(_Envelope):
    event_type: ClassVar[str] = "RunStarted"
    producer: Mapping[str, Any]
    run_id: str
    node_id: str
    snapshot_event_id: str
    resources: Mapping[str, Any]
    task_ref: str | None
    model_ref: str | None
    leased_ips: int


@dataclass(frozen=True, slots=True)
class RunFinished(_Envelope):
    event_type: ClassVar[str] = "RunFinished"
    producer: Mapping[str, Any]
    run_id: str
    status: str
    wall_clock_seconds: float | None
    seconds_to_first_token: float | None
    tokens_per_second: float | None
    peak_vram_bytes: int | None
    power_limit_w: int | None
    measured_tflops: float | None
    gpu_sm_utilization_pct: float | None
    energy_wh: float | None
    error_message: str | None
    compute_format: str | None


@dataclass(frozen=True, slots=True)
class ProviderRegistered(_Envelope):
    event_type: ClassVar[str] = "ProviderRegistered"
    producer: Mapping[str, Any]
    host_uri: str
    attributes: Attributes
    leased_ip_capacity: int | None
    reclamation_window: int | None


@dataclass(frozen=True, slots=True)
class ProviderAudited(_Envelope):
    event_type: ClassVar[str] = "ProviderAudited"
    producer: Mapping[str, Any]
    auditor: str
    attributes: Attributes
    signature: bytes | None


Event = (HardwareSnapshotted | NodeHeartbeated | RunStarted | RunFinished | ProviderRegistered
         | ProviderAudited)
EventData = tuple[str, dict[str, Any]]
"""An event before it is encoded: its type name and its fields as a dict (what producers,
fixtures and synthetic histories build; `codec.encode(*data)` makes it a record)."""
EVENT_CLASSES: Mapping[str, type[Event]] = {
    cls.event_type: cls for cls in (HardwareSnapshotted, NodeHeartbeated, RunStarted,
                                    RunFinished, ProviderRegistered, ProviderAudited)}
AVRO_FIELDS: Mapping[str, tuple[str, ...]] = {
    name: tuple(f.name for f in fields(cls) if f.name != "content")
    for name, cls in EVENT_CLASSES.items()}
"""The names of each event type's Avro fields (every dataclass field but `content`)."""


def typed(datum: Datum) -> Event:
    """The typed event of a decoded datum (the codec read it with the newest schema, so its
    fields are exactly the type's)."""
    cls = EVENT_CLASSES[datum.type]
    if cls is HardwareSnapshotted:
        return HardwareSnapshotted(**datum.data, content=datum.content)
    return cls(**datum.data)
