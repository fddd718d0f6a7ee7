"""The pure projection: log records plus the state they reference -> row changes of one batch.

No I/O here. `decode_all` turns raw Kafka records into decoded events (or dead-letter reasons);
`references` says which stored state a batch needs; `project` walks the batch in log order and
fills a `Plan` (rows to insert or upsert, dead letters, parked events, applied event ids) that the
writer applies in one transaction. Everything depends on event content and event time only.

Rules (DESIGN sections 4 and 5):
- content-addressed rows (gpu_hardware, system_hardware, system_gpu_link, system_software) have
  ids derived here, never taken from the producer; a stored attribute the id does not cover
  (a GPU's name and interface, a host's CPU spelling, vendor and core count) is the least one
  reported for that id (`MERGE_ORDER`), so the row does not depend on arrival or batch size;
- a node's current snapshot is the latest by (occurred_at, event_id); providers and audits are
  last-writer-wins by the same key, so arrival order does not matter;
- a provider's liveness (`last_seen`) moves only on its own facts: snapshots, heartbeats, runs
  and its registration, never on an auditor's ProviderAudited;
- a NodeHeartbeated (`LIVENESS_FACTS`) moves only liveness: its node's and provider's last seen
  time, a maximum, so applying it twice changes nothing and it is not kept in applied_events;
  it names its node's last snapshot, and one whose snapshot is not known is parked like a run;
- an event id already applied (or already parked) changes nothing; so does a snapshot or a run
  start that is already stored under its event id (a duplicate whose applied_events row was
  pruned: see `retention.prune_applied_events`);
- an audit whose signature does not verify against the configured auditor keys is a dead
  letter (with no keys configured, audits are not verified);
- impossible values go to dead letters; a reference not yet known (RunStarted or a heartbeat
  before its snapshot, RunFinished before its RunStarted) is parked and applied when the
  reference arrives, or dead-lettered once the provider's event time has moved `park_ttl` past
  it.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from functools import lru_cache
from typing import Any

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
    keep_least,
)
from hwledger.schemas import codec, identity, tokens, validation
from hwledger.schemas.cache import BoundedCache
from hwledger.schemas.events import (
    Event,
    HardwareSnapshotted,
    NodeHeartbeated,
    ProviderAudited,
    ProviderRegistered,
    RunFinished,
    RunStarted,
    typed,
)
from hwledger.schemas.signatures import AuditorKeys, audit_problem
from hwledger.seeds import interface_type_ids

OTHERS_FACTS = frozenset({"ProviderAudited"})
"""Event types about a provider that the provider does not publish itself: they change its
inventory row but are no sign of life."""
LIVENESS_FACTS = frozenset({"NodeHeartbeated"})
"""Event types that are only a sign of life: they move last seen times (a maximum, so a
re-applied one changes nothing) and no other column, so they are not recorded in
applied_events and do not recompute the provider's inventory row."""



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


def _is_uuid(value: str) -> bool:
    """A UUID in canonical spelling, the only one stored (PostgreSQL refuses some spellings
    that Python's parser accepts, such as a `urn:uuid:` prefix or `_` between digits)."""
    return validation.CANONICAL_UUID.fullmatch(value) is not None


def _storable(value: str | None) -> str | None:
    """`value` for a text column of dead_letters, or None when PostgreSQL could refuse it."""
    if value is None or "\x00" in value or len(value) > validation.MAX_ID_BYTES:
        return None
    return value


def references(batch: Sequence[Decoded]) -> References:
    """The stored state `project` needs for `batch` (ids PostgreSQL would refuse are left out:
    their events are dead letters)."""
    event_ids, snapshot_ids, providers = set(), set(), set()
    runs: set[tuple[str, str]] = set()
    for item in batch:
        event = item.event
        if event is None or item.error is not None:
            continue
        event_ids.add(str(event.event_id))
        providers.add(str(event.provider_id))
        if isinstance(event, RunStarted | RunFinished):
            runs.add((str(event.provider_id), str(event.run_id)))
        if isinstance(event, RunStarted | NodeHeartbeated):
            snapshot_ids.add(str(event.snapshot_event_id))
        elif isinstance(event, HardwareSnapshotted):
            snapshot_ids.add(str(event.event_id))
    return References(frozenset(e for e in event_ids if _is_uuid(e)),
                      frozenset(s for s in snapshot_ids if _is_uuid(s)),
                      frozenset((p, r) for p, r in runs
                                if _storable(p) is not None and _storable(r) is not None),
                      _storable_ids(providers))


def _storable_ids(ids: Iterable[str]) -> frozenset[str]:
    """Ids a query may carry: one that is not storable belongs to a dead letter."""
    return frozenset(i for i in ids if _storable(i) is not None)


def latest_event_times(batch: Sequence[Decoded]) -> dict[tuple[str, int], datetime]:
    """(topic, partition) -> the newest occurred_at among the batch's decodable events (a time
    outside the accepted window is a dead letter's and moves nothing)."""
    latest: dict[tuple[str, int], datetime] = {}
    for item in batch:
        at = None if item.event is None else item.event.occurred_at
        if at is not None and validation.EARLIEST <= at < validation.LATEST:
            key = (item.record.topic, item.record.partition)
            latest[key] = max(latest.get(key, at), at)
    return latest


@lru_cache(maxsize=65536)
def _gpu(pci_vendor_id: str, pci_device_id: str, pci_subsystem_id: str | None, vram_bytes: int,
         name: str, interface: str) -> GpuHardware:
    gpu = {"pci_vendor_id": pci_vendor_id, "pci_device_id": pci_device_id,
           "pci_subsystem_id": pci_subsystem_id, "vram_bytes": vram_bytes}
    ident = tokens.identify(name, pci_vendor_id, pci_device_id)
    return GpuHardware(
        identity.gpu_hardware_id(gpu), ident.vendor, ident.model, name,
        tokens.normalize_pci_id(pci_vendor_id), tokens.normalize_pci_id(pci_device_id),
        tokens.normalize_pci_id(pci_subsystem_id, 8), vram_bytes, interface)


def gpu_row(gpu: Mapping[str, Any]) -> GpuHardware:
    """The gpu_hardware row of one installed GPU (id, vendor and model tokens, PCI ids...)."""
    return _gpu(gpu["pci_vendor_id"], gpu["pci_device_id"], gpu.get("pci_subsystem_id"),
                int(gpu["vram_bytes"]), gpu["name"], gpu["interface"])


SYSTEM_ID_FIELDS = ("cpu_model", "cpu_threads", "ram_bytes", "architecture", "motherboard",
                    *identity.OPTIONAL_SYSTEM_IDENTITY)


@lru_cache(maxsize=65536)
def _system_id(system: tuple[Any, ...], config: tuple[tuple[Any, ...], ...]) -> str:
    return identity.system_hardware_id(
        dict(zip(SYSTEM_ID_FIELDS, system, strict=True)),
        [{"slot_index": c[0], "pci_vendor_id": c[1], "pci_device_id": c[2],
          "pci_subsystem_id": c[3], "vram_bytes": c[4], "slot_native_interface": c[5],
          "actual_interface": c[6]} for c in config])


def system_row(system: Mapping[str, Any],
               gpus: Sequence[Mapping[str, Any]]) -> SystemHardware:
    """The system_hardware row: host spec plus GPU configuration identity, then the optional
    host identity inputs (null when not reported)."""
    optional = tuple(system.get(k) for k in identity.OPTIONAL_SYSTEM_IDENTITY)
    key = (system["cpu_model"], int(system["cpu_threads"]), int(system["ram_bytes"]),
           system["architecture"], system.get("motherboard"), *optional)
    config = tuple(sorted(
        (int(g["slot_index"]), g["pci_vendor_id"], g["pci_device_id"], g.get("pci_subsystem_id"),
         int(g["vram_bytes"]), g.get("slot_native_interface"), g.get("actual_interface"))
        for g in gpus))
    return SystemHardware(
        _system_id(key, config), system["cpu_model"], system["cpu_vendor"],
        int(system["cpu_cores"]), int(system["cpu_threads"]), int(system["ram_bytes"]),
        system["architecture"], system.get("motherboard"), len(gpus),
        sum(int(g["vram_bytes"]) for g in gpus), *optional)


@lru_cache(maxsize=16384)
def _software_id(values: tuple[str | None, ...]) -> str:
    return identity.system_software_id(dict(zip(identity.SOFTWARE_FIELDS, values, strict=True)))


def software_row(software: Mapping[str, Any]) -> SystemSoftware:
    values = tuple(software.get(f) for f in identity.SOFTWARE_FIELDS)
    return SystemSoftware._make((_software_id(values), *values))


def _attributes(items: Iterable[Mapping[str, str]]) -> str:
    return json.dumps({a["key"]: a["value"] for a in items}, sort_keys=True)


@dataclass(frozen=True, slots=True)
class SnapshotContent:
    """What a snapshot's content (its fields after the envelope) projects to: its problems, or
    its rows (system, software, GPUs, slot links, allocatable, storage and power JSON). The
    same for every heartbeat of unchanged hardware, so `snapshot_content` computes it once per
    distinct content."""

    problems: tuple[str, ...]
    system: SystemHardware | None = None
    software: SystemSoftware | None = None
    gpus: tuple[GpuHardware, ...] = ()
    links: tuple[SystemGpuLink, ...] = ()
    slots: frozenset[int] = frozenset()
    allocatable: tuple[int, int, int] = (0, 0, 0)
    """cpu_millicores, memory_bytes, ephemeral_storage_bytes (unlimited saturated)."""
    storage: str = "[]"
    power: str = "{}"


_snapshot_contents: BoundedCache[bytes, SnapshotContent] = BoundedCache(
    codec.CONTENT_CACHE_SIZE)


def snapshot_content(event: HardwareSnapshotted) -> SnapshotContent:
    """The content rows of a HardwareSnapshotted, memoized by its encoded content."""
    key = event.content
    found = None if key is None else _snapshot_contents.get(key)
    if found is None:
        found = _snapshot_content(event.fields())
        if key is not None:
            _snapshot_contents.put(key, found)
    return found


def _snapshot_content(data: Mapping[str, Any]) -> SnapshotContent:
    found = validation.content_problems("HardwareSnapshotted", data)
    if found:
        return SnapshotContent(tuple(found))
    gpus = data["gpus"]
    system = system_row(data["system"], gpus)
    gpu_rows = tuple(gpu_row(g) for g in gpus)
    links = interface_type_ids()
    alloc = data["allocatable"]
    power = {str(g["slot_index"]): g["power_limit_w"] for g in gpus
             if g.get("power_limit_w") is not None}
    storage = [{"class": v["class"], "bytes": v["bytes"]} for v in data["storage"]]
    return SnapshotContent(
        (), system, software_row(data["software"]), gpu_rows,
        tuple(SystemGpuLink(system.system_hardware_id, g["slot_index"], row.gpu_hardware_id,
                            links.get(g.get("slot_native_interface") or ""),
                            links.get(g.get("actual_interface") or ""))
              for g, row in zip(gpus, gpu_rows, strict=True)),
        frozenset(g["slot_index"] for g in gpus),
        (validation.allocatable_value(alloc["cpu_millicores"]),
         validation.allocatable_value(alloc["memory_bytes"]),
         validation.allocatable_value(alloc["ephemeral_storage_bytes"])),
        json.dumps(storage, sort_keys=True), json.dumps(power, sort_keys=True))


def problems(event: Event) -> list[str]:
    """`validation.problems` of an event; a snapshot's content checks come from its memo."""
    if isinstance(event, HardwareSnapshotted):
        return (validation.envelope_problems(event.fields())
                + list(snapshot_content(event).problems))
    return validation.problems(event.event_type, event.fields())


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


class _Projector:
    """Walks one batch in order; a class only to share the plan and state between handlers."""

    def __init__(self, state: State, plan: Plan, park_ttl: timedelta,
                 auditor_keys: AuditorKeys | None) -> None:
        self.state = state
        self.plan = plan
        self.park_ttl = park_ttl
        self.auditor_keys = auditor_keys
        self.parked_ids = state.parked_event_ids()

    def dead(self, item: Decoded, reason: str) -> None:
        event = item.event
        self.plan.dead_letters.append(DeadLetter(
            item.record, reason, None if event is None else event.event_type,
            _storable(item.event_id)))
        if item.record.parked_id is not None:
            self.plan.unparked.append(item.record.parked_id)

    def park(self, item: Decoded, waiting_for: str) -> None:
        assert item.event is not None
        if item.record.parked_id is None and item.event_id in self.parked_ids:
            self.plan.duplicates += 1
            return
        provider = str(item.provider_id)
        self.state.parked.setdefault(provider, []).append(
            Pending(item, waiting_for, item.event.occurred_at))
        self.parked_ids.add(str(item.event_id))

    def age(self, provider: str, now: datetime) -> None:
        pending = self.state.parked.get(provider)
        if not pending:
            return
        keep = []
        for p in pending:
            if p.occurred_at < now - self.park_ttl:
                self.dead(p.decoded, f"parked for more than {self.park_ttl.total_seconds():g}s "
                                     f"of event time waiting for {p.waiting_for}")
                self.parked_ids.discard(str(p.decoded.event_id))
            else:
                keep.append(p)
        self.state.parked[provider] = keep

    def release(self, provider: str, key: str) -> None:
        pending = self.state.parked.get(provider, [])
        ready = [p for p in pending if p.waiting_for == key]
        if not ready:
            return
        self.state.parked[provider] = [p for p in pending if p.waiting_for != key]
        for p in ready:
            self.parked_ids.discard(str(p.decoded.event_id))
            if p.decoded.record.parked_id is not None:
                self.plan.unparked.append(p.decoded.record.parked_id)
            self.handle(Decoded(
                Record(p.decoded.record.topic, p.decoded.record.partition,
                       p.decoded.record.offset, p.decoded.record.raw),
                p.decoded.event))

    def handle(self, item: Decoded) -> None:
        event = item.event
        if event is None or item.error is not None:
            self.dead(item, item.error or "undecodable")
            return
        event_id = str(event.event_id)
        if not _is_uuid(event_id):
            self.dead(item, "; ".join(validation.uuid_problems({"event_id": event_id})))
            return
        if event_id in self.state.applied or (
                item.record.parked_id is None and event_id in self.parked_ids):
            self.plan.duplicates += 1
            return
        found = problems(event)
        if found:
            self.dead(item, "; ".join(found))
            return
        provider = str(event.provider_id)
        self.age(provider, event.occurred_at)
        outcome = HANDLERS[type(event)](self, event)
        match outcome:
            case Result.APPLIED:
                self.applied(item, event, provider)
            case Result.DUPLICATE:
                self.plan.duplicates += 1
            case Parked(waiting_for):
                self.park(item, waiting_for)
            case Refused(reason):
                self.dead(item, reason)

    def applied(self, item: Decoded, event: Event, provider: str) -> None:
        event_id, kind, occurred_at = str(event.event_id), event.event_type, event.occurred_at
        self.state.applied.add(event_id)
        if kind not in LIVENESS_FACTS:
            self.plan.applied.append(AppliedEvent(event_id, kind, occurred_at))
            self.plan.touched.add(provider)
        self.plan.projected[kind] += 1
        if item.record.parked_id is not None:
            self.plan.unparked.append(item.record.parked_id)
        if kind not in OTHERS_FACTS:
            seen = self.plan.last_seen.get(provider)
            self.plan.last_seen[provider] = occurred_at if seen is None else max(seen,
                                                                                 occurred_at)
            first = self.plan.first_seen.get(provider)
            self.plan.first_seen[provider] = occurred_at if first is None else min(first,
                                                                                   occurred_at)
        if isinstance(event, HardwareSnapshotted):
            self.release(provider, f"snapshot {event_id}")
        elif isinstance(event, RunStarted):
            self.release(provider, f"run {event.run_id}")

    def on_snapshot(self, event: HardwareSnapshotted) -> Outcome:
        plan = self.plan
        event_id, at = str(event.event_id), event.occurred_at
        if event_id in self.state.snapshots:
            return Result.DUPLICATE
        provider, node = str(event.provider_id), str(event.node_id)
        content = snapshot_content(event)
        assert content.system is not None and content.software is not None
        system_id = content.system.system_hardware_id
        software_id = content.software.system_software_id
        keep_least(plan.system_hardware, "system_hardware", system_id, content.system)
        plan.system_software[software_id] = content.software
        for row in content.gpus:
            keep_least(plan.gpu_hardware, "gpu_hardware", row.gpu_hardware_id, row)
        for link in content.links:
            plan.system_gpu_links[(system_id, link.slot_index)] = link
        plan.snapshots.append(HardwareSnapshot(
            event_id, provider, node, system_id, software_id, at, *content.allocatable,
            content.storage, content.power))
        key = (provider, node)
        current = plan.nodes.get(key)
        if current is None:
            plan.nodes[key] = NodeRow(provider, node, event_id, at, at, at)
        else:
            if (at, uuid.UUID(event_id)) > (current.occurred_at,
                                            uuid.UUID(current.snapshot_event_id)):
                current.snapshot_event_id, current.occurred_at = event_id, at
            current.first_seen_at = min(current.first_seen_at, at)
            current.last_seen_at = max(current.last_seen_at, at)
        self.state.snapshots[event_id] = KnownSnapshot(
            provider, node, content.slots, system_id, software_id)
        return Result.APPLIED

    def on_run_started(self, event: RunStarted) -> Outcome:
        run_id, snapshot_id = str(event.run_id), str(event.snapshot_event_id)
        snapshot = self.state.snapshots.get(snapshot_id)
        if snapshot is None:
            return Parked(f"snapshot {snapshot_id}")
        if (snapshot.provider_id, snapshot.node_id) != (event.provider_id, event.node_id):
            return Refused(
                f"run {run_id} on {event.provider_id}/{event.node_id} references "
                f"snapshot {snapshot_id} of {snapshot.provider_id}/{snapshot.node_id}")
        slots = sorted(event.resources["gpu_slots"])
        missing = [s for s in slots if s not in snapshot.slots]
        if missing:
            return Refused(f"run {run_id} uses GPU slot(s) {missing} that snapshot "
                           f"{snapshot_id} does not have")
        key = (str(event.provider_id), run_id)
        if key in self.state.runs:
            if self.state.runs[key].started_event_id == event.event_id:
                return Result.DUPLICATE
            return Refused(f"run {run_id} of {key[0]} was already started by another event")
        res = event.resources
        self.plan.runs.append(Run(
            run_id, event.provider_id, event.node_id, snapshot_id, event.event_id,
            event.occurred_at, res["cpu_millicores"], res["memory_bytes"],
            res["ephemeral_storage_bytes"], event.task_ref, event.model_ref, event.leased_ips))
        self.plan.run_gpu_usage.extend(RunGpuUsage(run_id, s, key[0]) for s in slots)
        self.state.runs[key] = KnownRun(
            str(event.node_id), None, slots[0] if slots else None,
            snapshot.system_hardware_id, snapshot.system_software_id, str(event.event_id))
        return Result.APPLIED

    def on_heartbeat(self, event: NodeHeartbeated) -> Outcome:
        snapshot_id = str(event.snapshot_event_id)
        snapshot = self.state.snapshots.get(snapshot_id)
        if snapshot is None:
            return Parked(f"snapshot {snapshot_id}")
        key = (str(event.provider_id), str(event.node_id))
        if (snapshot.provider_id, snapshot.node_id) != key:
            return Refused(f"heartbeat of {key[0]}/{key[1]} references snapshot {snapshot_id} "
                           f"of {snapshot.provider_id}/{snapshot.node_id}")
        seen = self.plan.node_seen.get(key)
        self.plan.node_seen[key] = event.occurred_at if seen is None else max(
            seen, event.occurred_at)
        return Result.APPLIED

    def on_run_finished(self, event: RunFinished) -> Outcome:
        provider, run_id = str(event.provider_id), str(event.run_id)
        status = str(event.status)
        run = self.state.runs.get((provider, run_id))
        if run is None:
            return Parked(f"run {run_id}")
        if run.status is not None:
            if run.status == status:
                return Result.APPLIED
            return Refused(f"run {run_id} finished twice with different outcomes "
                           f"({run.status}, {status})")
        run.status = status
        self.plan.run_finishes.append(RunFinish(provider, run_id, event.event_id,
                                                event.occurred_at, status))
        self.plan.run_metrics.append(RunHardwareMetrics(
            run_id, run.system_hardware_id, run.first_slot, run.system_software_id,
            event.wall_clock_seconds, event.seconds_to_first_token, event.tokens_per_second,
            event.peak_vram_bytes, event.power_limit_w, event.measured_tflops,
            event.gpu_sm_utilization_pct, event.energy_wh, provider, event.compute_format))
        return Result.APPLIED

    def on_registration(self, event: ProviderRegistered) -> Outcome:
        provider = str(event.provider_id)
        row = Provider(provider, event.host_uri, _attributes(event.attributes),
                       event.occurred_at, event.event_id, event.leased_ip_capacity,
                       event.reclamation_window)
        current = self.plan.providers.get(provider)
        if current is None or _later(row.registered_at, row.event_id,
                                     current.registered_at, current.event_id):
            self.plan.providers[provider] = row
        return Result.APPLIED

    def on_audit(self, event: ProviderAudited) -> Outcome:
        if self.auditor_keys is not None:
            unproven = audit_problem(event.fields(), self.auditor_keys)
            if unproven is not None:
                return Refused(unproven)
        key = (str(event.provider_id), str(event.auditor))
        row = ProviderAudit(*key, _attributes(event.attributes), event.occurred_at,
                            event.event_id)
        current = self.plan.audits.get(key)
        if current is None or _later(row.audited_at, row.event_id,
                                     current.audited_at, current.event_id):
            self.plan.audits[key] = row
        return Result.APPLIED


HANDLERS: Mapping[type[Event], Callable[[_Projector, Any], Outcome]] = {
    HardwareSnapshotted: _Projector.on_snapshot,
    NodeHeartbeated: _Projector.on_heartbeat,
    RunStarted: _Projector.on_run_started,
    RunFinished: _Projector.on_run_finished,
    ProviderRegistered: _Projector.on_registration,
    ProviderAudited: _Projector.on_audit,
}
"""The handler of each event type (the event argument is of the key's type)."""


def _later(at: datetime, event_id: str, than_at: datetime, than_event_id: str) -> bool:
    """Is (at, event_id) later than (than_at, than_event_id)? Last writer wins by event time,
    then by event id."""
    return (at, uuid.UUID(event_id)) > (than_at, uuid.UUID(than_event_id))


def project(batch: Sequence[Decoded], state: State, park_ttl: timedelta,
            plan: Plan | None = None, auditor_keys: AuditorKeys | None = None) -> Plan:
    """Project `batch` in order onto `state`; returns the row changes (state is updated).

    With `auditor_keys`, a ProviderAudited counts only when it carries a valid signature of
    one of its auditor's keys (else it is a dead letter); without, audits are not verified.
    """
    plan = plan or Plan()
    projector = _Projector(state, plan, park_ttl, auditor_keys)
    for item in batch:
        projector.handle(item)
    plan.newly_parked = [p for pending in state.parked.values() for p in pending
                         if p.decoded.record.parked_id is None]
    return plan
