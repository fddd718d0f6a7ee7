"""Dead letters and parked events as `hwledger dlq list` / `hwledger dlq parked` show them,
and how a batch the database refuses is split to find the refused record (`split_batch`,
`refusal`: the reason a dead letter keeps).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from hwledger.projectors.plan import Fence, Plan, Record

REFUSED = (psycopg.errors.DataError, psycopg.errors.IntegrityError,
           psycopg.errors.ProgramLimitExceeded)
"""PostgreSQL refused the data itself (SQLSTATE classes 22, 23, 54): no retry can help."""


MAX_REASON = 1000


def refusal(exc: psycopg.Error) -> str:
    """The dead-letter reason of a record PostgreSQL refused."""
    message = (exc.diag.message_primary or str(exc)).replace("\x00", "")
    return f"refused by PostgreSQL (SQLSTATE {exc.sqlstate}): {message}"[:MAX_REASON]


def split_batch(records: Sequence[Record], fence: Fence) -> list[tuple[Sequence[Record], Fence]]:
    """`records` as two consecutive halves, each with its fence: the second half starts each
    partition where the first left it (partitions not in `fence` stay unfenced)."""
    middle = len(records) // 2
    halves = (records[:middle], records[middle:])
    start = {key: expected for key, (expected, _) in fence.items()}
    parts: list[tuple[Sequence[Record], Fence]] = []
    for half in halves:
        after: dict[tuple[str, int], int] = {}
        for r in half:
            key = (r.topic, r.partition)
            if key in fence:
                after[key] = max(after.get(key, r.offset + 1), r.offset + 1)
        parts.append((half, {key: (start[key], end) for key, end in after.items()}))
        start.update(after)
    return parts


def summed(plans: Sequence[Plan]) -> Plan:
    """One plan's counts for batch metrics: what `plans` projected, dead-lettered and parked."""
    total = Plan()
    for plan in plans:
        total.projected.update(plan.projected)
        total.duplicates += plan.duplicates
        total.dead_letters.extend(plan.dead_letters)
        total.newly_parked.extend(plan.newly_parked)
        total.applied.extend(plan.applied)
    return total


def dead_letter_rows(conn: psycopg.Connection[Any], limit: int) -> list[dict[str, Any]]:
    """The newest dead letters, for `hwledger dlq list`."""
    cur = conn.execute(
        'SELECT dead_letter_id, topic, partition, "offset", event_type, event_id, retried, '
        "length(raw) AS raw_bytes, reason FROM dead_letters "
        "ORDER BY dead_letter_id DESC LIMIT %s", (limit,))
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def parked_rows(conn: psycopg.Connection[Any], limit: int) -> list[dict[str, Any]]:
    """Parked events, oldest first, for `hwledger dlq parked`."""
    cur = conn.execute(
        'SELECT parked_id, topic, partition, "offset", event_type, event_id, provider_id, '
        "waiting_for, occurred_at FROM parked_events ORDER BY occurred_at, parked_id LIMIT %s",
        (limit,))
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def to_json(rows: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(json.dumps(r, default=str, sort_keys=True) for r in rows)
