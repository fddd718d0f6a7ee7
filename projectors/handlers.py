"""The projection's handler of each event type: one event plus the batch's state -> row
changes and an `Outcome` (applied, duplicate, parked waiting for a reference, refused).

Pure, like `projection` (which walks the batch, dead-letters, parks and releases): a handler
only reads and updates `Context.state` and adds rows to `Context.plan`. The rules each one
follows are in `projection`'s docstring (DESIGN sections 4 and 5).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from hwledger.projectors.plan import (
    KnownRun,
    KnownSnapshot,
    NodeRow,
    Outcome,
    Parked,
    Plan,
    Refused,
    Result,
    State,
)
from hwledger.projectors.rows import (
    HardwareSnapshot,
    Provider,
    ProviderAudit,
    Run,
    RunFinish,
    RunGpuUsage,
    RunHardwareMetrics,
    keep_least,
)
from hwledger.projectors.snapshot_rows import snapshot_content
from hwledger.schemas.events import (
    Event,
    HardwareSnapshotted,
    NodeHeartbeated,
    ProviderAudited,
    ProviderRegistered,
    RunFinished,
    RunStarted,
)
from hwledger.schemas.signatures import AuditorKeys, audit_problem


class Context(Protocol):
    """What a handler sees of the batch being walked."""

    state: State
    plan: Plan
    auditor_keys: AuditorKeys | None


def _attributes(items: Iterable[Mapping[str, str]]) -> str:
    return json.dumps({a["key"]: a["value"] for a in items}, sort_keys=True)


def _later(at: datetime, event_id: str, than_at: datetime, than_event_id: str) -> bool:
    """Is (at, event_id) later than (than_at, than_event_id)? Last writer wins by event time,
    then by event id."""
    return (at, uuid.UUID(event_id)) > (than_at, uuid.UUID(than_event_id))


def on_snapshot(ctx: Context, event: HardwareSnapshotted) -> Outcome:
    plan = ctx.plan
    event_id, at = str(event.event_id), event.occurred_at
    if event_id in ctx.state.snapshots:
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
        if _later(at, event_id, current.occurred_at, current.snapshot_event_id):
            current.snapshot_event_id, current.occurred_at = event_id, at
        current.first_seen_at = min(current.first_seen_at, at)
        current.last_seen_at = max(current.last_seen_at, at)
    ctx.state.snapshots[event_id] = KnownSnapshot(
        provider, node, content.slots, system_id, software_id)
    return Result.APPLIED


def on_run_started(ctx: Context, event: RunStarted) -> Outcome:
    run_id, snapshot_id = str(event.run_id), str(event.snapshot_event_id)
    snapshot = ctx.state.snapshots.get(snapshot_id)
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
    if key in ctx.state.runs:
        if ctx.state.runs[key].started_event_id == event.event_id:
            return Result.DUPLICATE
        return Refused(f"run {run_id} of {key[0]} was already started by another event")
    res = event.resources
    ctx.plan.runs.append(Run(
        run_id, event.provider_id, event.node_id, snapshot_id, event.event_id,
        event.occurred_at, res["cpu_millicores"], res["memory_bytes"],
        res["ephemeral_storage_bytes"], event.task_ref, event.model_ref, event.leased_ips))
    ctx.plan.run_gpu_usage.extend(RunGpuUsage(run_id, s, key[0]) for s in slots)
    ctx.state.runs[key] = KnownRun(
        str(event.node_id), None, slots[0] if slots else None,
        snapshot.system_hardware_id, snapshot.system_software_id, str(event.event_id))
    return Result.APPLIED


def on_heartbeat(ctx: Context, event: NodeHeartbeated) -> Outcome:
    snapshot_id = str(event.snapshot_event_id)
    snapshot = ctx.state.snapshots.get(snapshot_id)
    if snapshot is None:
        return Parked(f"snapshot {snapshot_id}")
    key = (str(event.provider_id), str(event.node_id))
    if (snapshot.provider_id, snapshot.node_id) != key:
        return Refused(f"heartbeat of {key[0]}/{key[1]} references snapshot {snapshot_id} "
                       f"of {snapshot.provider_id}/{snapshot.node_id}")
    seen = ctx.plan.node_seen.get(key)
    ctx.plan.node_seen[key] = event.occurred_at if seen is None else max(
        seen, event.occurred_at)
    return Result.APPLIED


def on_run_finished(ctx: Context, event: RunFinished) -> Outcome:
    provider, run_id = str(event.provider_id), str(event.run_id)
    status = str(event.status)
    run = ctx.state.runs.get((provider, run_id))
    if run is None:
        return Parked(f"run {run_id}")
    if run.status is not None:
        if run.status == status:
            return Result.APPLIED
        return Refused(f"run {run_id} finished twice with different outcomes "
                       f"({run.status}, {status})")
    run.status = status
    ctx.plan.run_finishes.append(RunFinish(provider, run_id, event.event_id,
                                            event.occurred_at, status))
    ctx.plan.run_metrics.append(RunHardwareMetrics(
        run_id, run.system_hardware_id, run.first_slot, run.system_software_id,
        event.wall_clock_seconds, event.seconds_to_first_token, event.tokens_per_second,
        event.peak_vram_bytes, event.power_limit_w, event.measured_tflops,
        event.gpu_sm_utilization_pct, event.energy_wh, provider, event.compute_format))
    return Result.APPLIED


def on_registration(ctx: Context, event: ProviderRegistered) -> Outcome:
    provider = str(event.provider_id)
    row = Provider(provider, event.host_uri, _attributes(event.attributes),
                   event.occurred_at, event.event_id, event.leased_ip_capacity,
                   event.reclamation_window)
    current = ctx.plan.providers.get(provider)
    if current is None or _later(row.registered_at, row.event_id,
                                 current.registered_at, current.event_id):
        ctx.plan.providers[provider] = row
    return Result.APPLIED


def on_audit(ctx: Context, event: ProviderAudited) -> Outcome:
    if ctx.auditor_keys is not None:
        unproven = audit_problem(event.fields(), ctx.auditor_keys)
        if unproven is not None:
            return Refused(unproven)
    key = (str(event.provider_id), str(event.auditor))
    row = ProviderAudit(*key, _attributes(event.attributes), event.occurred_at,
                        event.event_id)
    current = ctx.plan.audits.get(key)
    if current is None or _later(row.audited_at, row.event_id,
                                 current.audited_at, current.event_id):
        ctx.plan.audits[key] = row
    return Result.APPLIED


HANDLERS: Mapping[type[Event], Callable[[Context, Any], Outcome]] = {
    HardwareSnapshotted: on_snapshot,
    NodeHeartbeated: on_heartbeat,
    RunStarted: on_run_started,
    RunFinished: on_run_finished,
    ProviderRegistered: on_registration,
    ProviderAudited: on_audit,
}
"""The handler of each event type (the event argument is of the key's type)."""
