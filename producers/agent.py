"""`hwledger agent`: the long-running snapshot publisher of one node.

Publishes a snapshot at start, a heartbeat snapshot every `heartbeat_s` (it keeps the provider
online in the read model), and a new snapshot as soon as a re-probe every `check_s` finds a
changed fingerprint. Stops when `stop` is set (the CLI sets it on SIGTERM/SIGINT).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from hwledger.producers.runner import SnapshotTracker


def run_agent(tracker: SnapshotTracker, stop: threading.Event, *, heartbeat_s: float,
              check_s: float, report: Callable[[str, str], None] = lambda reason, eid: None
              ) -> int:
    """Publish snapshots until `stop` is set; returns how many were published."""
    tracker.publish_current()
    report("start", tracker.snapshot_event_id)
    published = 1
    next_heartbeat = time.monotonic() + heartbeat_s
    while not stop.wait(max(0.0, min(check_s, next_heartbeat - time.monotonic()))):
        if time.monotonic() >= next_heartbeat:
            tracker.publish_current()
            reason = "heartbeat"
        elif tracker.refresh():
            reason = "changed"
        else:
            continue
        next_heartbeat = time.monotonic() + heartbeat_s
        published += 1
        report(reason, tracker.snapshot_event_id)
    return published
