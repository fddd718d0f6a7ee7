"""The projector's position in the log: one `projection_offsets` row per (projection, topic,
partition) holding the next offset to apply, a halt reason and the newest event time applied.

`fence_for` is a batch's fence (pure); `Offsets.fence` is the compare-and-set that makes a
batch's rows and its offsets one commit: an instance that lost a partition finds the stored
offset moved and gets `Fenced`. The other methods are the operator's and the loop's reads and
writes of the same rows (`hwledger offsets`, the lost-log check).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from hwledger.projectors.plan import Fence, Record

PROJECTION = "read_model"
"""The projection's name in `projection_offsets` (each schema, live or rebuilt, has its own)."""


def fence_for(records: Sequence[Record], positions: Mapping[int, int | None],
              topic: str) -> Fence:
    """(topic, partition) -> (stored offset the batch starts from, next offset after it)."""
    last: dict[int, int] = {}
    for r in records:
        last[r.partition] = max(last.get(r.partition, -1), r.offset)
    return {(topic, p): (positions[p], o + 1) for p, o in last.items()}


class Fenced(Exception):
    """The stored offset of a partition is no longer the one this batch started from."""


class Offsets:
    """The offset rows of one projection over one connection (the caller owns it)."""

    def __init__(self, conn: psycopg.Connection[Any], projection: str = PROJECTION) -> None:
        self.conn = conn
        self.projection = projection

    def stored(self, topic: str, partitions: Iterable[int]) -> dict[int, int | None]:
        """The stored next offset per partition; None where nothing was ever committed."""
        wanted = sorted(set(partitions))
        rows = self.conn.execute(
            "SELECT partition, next_offset FROM projection_offsets "
            "WHERE projection = %s AND topic = %s AND partition = ANY(%s)",
            (self.projection, topic, wanted)).fetchall()
        self.conn.commit()
        found: dict[int, int | None] = dict.fromkeys(wanted)
        found.update({int(p): int(o) for p, o in rows})
        return found

    def reset(self, topic: str, partition: int, offset: int) -> None:
        """Store `offset` as the partition's next offset and clear its halt (`hwledger offsets
        reset`); the projector, restarted, resumes the partition there."""
        self._set_row(topic, partition, offset, None,
                      "next_offset = excluded.next_offset, halted_reason = NULL")

    def halt(self, topic: str, partition: int, reason: str) -> None:
        """Record that the partition is stopped because its log was lost (see logcheck)."""
        self._set_row(topic, partition, 0, reason, "halted_reason = excluded.halted_reason")

    def _set_row(self, topic: str, partition: int, offset: int, reason: str | None,
                 update: str) -> None:
        with self.conn.transaction():
            self.conn.execute(
                sql.SQL("INSERT INTO projection_offsets (projection, topic, partition, "
                        "next_offset, halted_reason) VALUES (%s, %s, %s, %s, %s) "
                        "ON CONFLICT (projection, topic, partition) DO UPDATE SET {}").format(
                    sql.SQL(update)),
                (self.projection, topic, partition, offset, reason))

    def halted(self, topic: str, partitions: Iterable[int]) -> dict[int, str]:
        """partition -> halt reason, for the partitions of `partitions` that are stopped."""
        rows = self.conn.execute(
            "SELECT partition, halted_reason FROM projection_offsets WHERE projection = %s "
            "AND topic = %s AND partition = ANY(%s) AND halted_reason IS NOT NULL",
            (self.projection, topic, sorted(set(partitions)))).fetchall()
        self.conn.commit()
        return {int(p): str(r) for p, r in rows}

    def fence(self, fence: Fence) -> None:
        """Move every fenced partition from its expected offset to the batch's end, inside the
        caller's transaction; `Fenced` when one has moved away."""
        for (topic, partition), (expected, after) in sorted(fence.items()):
            if expected is None:
                cur = self.conn.execute(
                    "INSERT INTO projection_offsets (projection, topic, partition, next_offset) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (self.projection, topic, partition, after))
            else:
                cur = self.conn.execute(
                    "UPDATE projection_offsets SET next_offset = %s WHERE projection = %s "
                    "AND topic = %s AND partition = %s AND next_offset = %s",
                    (after, self.projection, topic, partition, expected))
            if cur.rowcount != 1:
                raise Fenced(f"{topic}[{partition}] moved away from offset {expected}")

    def event_times(self, fence: Fence, latest: Mapping[tuple[str, int], datetime]) -> None:
        """Record the newest event time seen per fenced partition (the read side's asOf)."""
        keys = sorted(k for k in latest if k in fence)
        if keys:
            self.conn.execute(
                "UPDATE projection_offsets o SET last_event_at = greatest(o.last_event_at, u.at) "
                "FROM unnest(%s::text[], %s::int[], %s::timestamptz[]) AS u(topic, partition, at) "
                "WHERE o.projection = %s AND (o.topic, o.partition) = (u.topic, u.partition)",
                ([k[0] for k in keys], [k[1] for k in keys], [latest[k] for k in keys],
                 self.projection))
