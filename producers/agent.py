"""`hwledger agent`: the long-running liveness publisher of one node.

Publishes a full HardwareSnapshotted at start and as soon as a re-probe every `check_s` finds
a changed fingerprint; every `heartbeat_s` it re-probes and, when nothing changed, publishes
the small NodeHeartbeated naming the snapshot in effect (it keeps the node online in the read
model for tens of bytes instead of a whole snapshot). Every `snapshot_every`-th heartbeat is
a full snapshot again, the safety net: a read model that refused or never saw the snapshot the
heartbeats name (they park, then become dead letters) has the node's hardware again within
that many periods. Stops when `stop` is set (the CLI sets it on SIGTERM/SIGINT).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from hwledger.producers.runner import SnapshotTracker

SNAPSHOT_EVERY = 12
"""Heartbeat periods per safety-net snapshot: hourly at the default 300 s period."""


def heartbeat_publishes_snapshot(beats_since_snapshot: int, snapshot_every: int) -> bool:
    """Is the heartbeat after `beats_since_snapshot` small ones a full snapshot again?"""
    return beats_since_snapshot + 1 >= snapshot_every


def run_agent(tracker: SnapshotTracker, stop: threading.Event, *, heartbeat_s: float,
              check_s: float, snapshot_every: int = SNAPSHOT_EVERY,
              report: Callable[[str, str], None] = lambda reason, eid: None) -> int:
    """Publish until `stop` is set; returns how many events were published. `report` gets the
    reason (start, changed, heartbeat, resnapshot) and the published event's id."""
    tracker.publish_current()
    report("start", tracker.snapshot_event_id)
    published, beats = 1, 0
    next_heartbeat = time.monotonic() + heartbeat_s
    while not stop.wait(max(0.0, min(check_s, next_heartbeat - time.monotonic()))):
        due = time.monotonic() >= next_heartbeat
        if tracker.refresh():
            reason, event_id, beats = "changed", tracker.snapshot_event_id, 0
        elif not due:
            continue
        elif heartbeat_publishes_snapshot(beats, snapshot_every):
            tracker.publish_current()
            reason, event_id, beats = "resnapshot", tracker.snapshot_event_id, 0
        else:
            reason, event_id, beats = "heartbeat", tracker.publish_heartbeat(), beats + 1
        if due:
            next_heartbeat = time.monotonic() + heartbeat_s
        published += 1
        report(reason, event_id)
    return published
