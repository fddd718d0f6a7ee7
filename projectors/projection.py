"""The pure projection: log records plus the state they reference -> row changes of one batch.

No I/O here. `plan.decode_all` turns raw Kafka records into typed events (or dead-letter
reasons); `batch.references` says which stored state a batch needs; `project` walks the batch
in log order, one handler per event type (`handlers.HANDLERS`), and fills a `plan.Plan` (rows
to insert or upsert, dead letters, parked events, applied event ids) that the writer applies in
one transaction; a snapshot's content rows come from `snapshot_rows`. Everything depends on
event content and event time only.

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

from collections.abc import Sequence
from datetime import datetime, timedelta

from hwledger.projectors.batch import is_uuid, storable
from hwledger.projectors.handlers import HANDLERS
from hwledger.projectors.plan import (
    DeadLetter,
    Decoded,
    Parked,
    Pending,
    Plan,
    Record,
    Refused,
    Result,
    State,
)
from hwledger.projectors.rows import AppliedEvent
from hwledger.projectors.snapshot_rows import snapshot_content
from hwledger.schemas import validation
from hwledger.schemas.events import Event, HardwareSnapshotted, RunStarted
from hwledger.schemas.signatures import AuditorKeys

OTHERS_FACTS = frozenset({"ProviderAudited"})
"""Event types about a provider that the provider does not publish itself: they change its
inventory row but are no sign of life."""
LIVENESS_FACTS = frozenset({"NodeHeartbeated"})
"""Event types that are only a sign of life: they move last seen times (a maximum, so a
re-applied one changes nothing) and no other column, so they are not recorded in
applied_events and do not recompute the provider's inventory row."""


def problems(event: Event) -> list[str]:
    """`validation.problems` of an event; a snapshot's content checks come from its memo."""
    if isinstance(event, HardwareSnapshotted):
        return (validation.envelope_problems(event.fields())
                + list(snapshot_content(event).problems))
    return validation.problems(event.event_type, event.fields())


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
            storable(item.event_id)))
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
        if not is_uuid(event_id):
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
