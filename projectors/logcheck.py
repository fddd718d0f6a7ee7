"""Is the log behind a partition still the one the projection read? (pure)

A projection stores, per partition, the next offset it will apply. The log can lose what is
behind or ahead of it: a topic deleted and re-created, a broker that lost its data, retention,
an unclean leader election. Then the stored offset is beyond the log's end, or the log's start
is beyond it, and reading on would silently skip events. `log_gap` names such a partition; the
projector stops it (and records the reason in `projection_offsets.halted_reason`) and `hwledger
status` raises an alarm, until the operator rebuilds or resets the partition's offset
(`hwledger offsets reset`, docs/operations.md "Poison records and a lost log").

A log end before the stored offset is only trusted from the broker's own refusal to serve the
offset (the projector's `auto.offset.reset=error`), not from a high watermark: Tansu reports
the base offset of its last record batch plus one as the high watermark, below the true end.
"""

from __future__ import annotations

from collections.abc import Mapping

RECOVERY = ("rebuild (`hwledger rebuild`) or reset the partition to its log start "
            "(`hwledger offsets reset --partition {partition}`)")


def log_gap(partition: int, low: int, high: int | None, stored: int | None) -> str | None:
    """Why the log of `partition` (offsets `low` .. `high`; None: end not known) no longer
    holds the projection's next offset `stored`; None when it does, or when nothing was
    applied yet (`stored` None: the projection starts at the log start, whatever it is)."""
    if stored is None:
        return None
    position = stored
    if high is not None and position > high:
        return (f"partition {partition}: the projection's next offset {position} is beyond the "
                f"log's end {high}: the log was lost or truncated (topic re-created?)")
    if low > position:
        return (f"partition {partition}: the log starts at {low}, after the projection's next "
                f"offset {position}: events {position}..{low - 1} were deleted before they "
                "were projected")
    return None


def log_start_gaps(watermarks: Mapping[int, tuple[int, int]],
                   positions: Mapping[int, int | None]) -> dict[int, str]:
    """partition -> `log_gap` reason, for the partitions of `watermarks` whose log starts
    after the stored offset (the end is the broker's to judge, see above)."""
    found = {}
    for partition, (low, _) in sorted(watermarks.items()):
        reason = log_gap(partition, low, None, positions.get(partition))
        if reason is not None:
            found[partition] = reason
    return found
