"""The projector's health, as its liveness and readiness probes see it.

`Health` is what the projector's loop records (when it last went round, whether it has its
partitions, whether its database answered); `liveness` and `readiness` are pure verdicts on it.
The metrics port serves them as /healthz and /readyz next to /metrics (`metrics.serve`), so a
main loop that is wedged while the HTTP thread lives fails its liveness probe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

DEFAULT_STALL_SECONDS = 60.0


@dataclass
class Health:
    """Facts the projector's loop keeps up to date (monotonic clock)."""

    stall_seconds: float = DEFAULT_STALL_SECONDS
    last_loop: float = field(default_factory=time.monotonic)
    assigned: bool = False
    database_ok: bool = True


def liveness(health: Health, now: float) -> tuple[bool, str]:
    """Alive while the main loop went round within `stall_seconds` (a poll times out after the
    batch window, so a loop that does not come back is wedged)."""
    since = now - health.last_loop
    if since > health.stall_seconds:
        return False, (f"the projector's loop has not completed a poll for {since:.0f}s "
                       f"(limit {health.stall_seconds:g}s, HWLEDGER_PROJECTOR_STALL_SECONDS)")
    return True, "the loop polls"


def readiness(health: Health) -> tuple[bool, str]:
    """Ready once the consumer group gave it its partitions and while its database answers."""
    if not health.assigned:
        return False, "waiting for a partition assignment from the consumer group"
    if not health.database_ok:
        return False, "the database does not answer (retrying)"
    return True, "assigned and the database answers"
