"""applied_events retention: drop the dedup rows older than a window of event time.

Why it is safe (docs/operations.md, "Retention"): redelivery through the log never reaches the
dedup check, because the offset fence (a compare-and-set on `projection_offsets`, in the same
transaction as the rows) commits every offset once; applied_events only recognises the same
event published again at another offset (a spool re-send, a re-run import). An event whose
row was pruned is projected again, and changes nothing: snapshots and run starts are found
under their event ids in hardware_snapshots and runs (`projection.DUPLICATE`), finishes,
registrations, audits and heartbeats are idempotent (same status, last-writer-wins, maximum).
hardware_snapshots is not pruned here: runs reference snapshots by event id and a node's
current snapshot is one of them.

`prune_slices` (pure) cuts the rows to delete into one-hour slices of event time, each deleted
in its own transaction (a range scan of the BRIN index), so no statement holds a day of rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

SLICE = timedelta(hours=1)
DEFAULT_WINDOW = timedelta(days=7)
TABLE = "applied_events"


@dataclass(frozen=True)
class Pruned:
    """One prune: rows deleted, the event time they were older than, how long it took."""

    deleted: int
    horizon: datetime | None
    seconds: float


def horizon(newest_event_at: datetime | None, now: datetime, window: timedelta
            ) -> datetime | None:
    """Rows older than this go: `window` before the newest event projected, or before `now`
    when that is earlier (a host whose clock runs ahead cannot prune the present); None when
    nothing was projected yet."""
    if newest_event_at is None:
        return None
    return min(newest_event_at, now) - window


def prune_slices(start: datetime | None, end: datetime, step: timedelta = SLICE
                 ) -> list[tuple[datetime | None, datetime]]:
    """[lower, upper) bounds (None: unbounded) that cover everything before `end`: first all
    before `start` (the previous horizon, or the oldest row's time; None when there is none),
    then `step` slices from `start` up to `end`."""
    if start is None or start >= end:
        return [(None, end)]
    bounds: list[tuple[datetime | None, datetime]] = [(None, start)]
    lower = start
    while lower < end:
        upper = min(lower + step, end)
        bounds.append((lower, upper))
        lower = upper
    return bounds


def prune_applied_events(conn: psycopg.Connection[Any], window: timedelta, now: datetime
                         ) -> Pruned:
    """Delete the current schema's applied_events rows older than `horizon(...)` and record
    the horizon in retention_horizons (verify compares only newer rows). Commits per slice."""
    started = time.monotonic()
    row = conn.execute(
        "SELECT (SELECT max(last_event_at) FROM projection_offsets), "
        "coalesce((SELECT pruned_before FROM retention_horizons WHERE table_name = %s), "
        "(SELECT min(occurred_at) FROM applied_events))", (TABLE,)).fetchone()
    conn.commit()
    assert row is not None
    cutoff = horizon(row[0], now, window)
    if cutoff is None:
        return Pruned(0, None, time.monotonic() - started)
    deleted = 0
    for lower, upper in prune_slices(row[1], cutoff):
        with conn.transaction():
            deleted += conn.execute(
                "DELETE FROM applied_events WHERE occurred_at < %(upper)s "
                "AND (%(lower)s::timestamptz IS NULL OR occurred_at >= %(lower)s)",
                {"lower": lower, "upper": upper}).rowcount
    with conn.transaction():
        conn.execute(
            "INSERT INTO retention_horizons (table_name, pruned_before) VALUES (%s, %s) "
            "ON CONFLICT (table_name) DO UPDATE SET pruned_before = "
            "greatest(retention_horizons.pruned_before, excluded.pruned_before)",
            (TABLE, cutoff))
    return Pruned(deleted, cutoff, time.monotonic() - started)
