"""What a batch refers to before it is projected: the stored state it needs (`references`)
and the newest event time per partition (`latest_event_times`); ids PostgreSQL could refuse
are left out, since their events become dead letters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from hwledger.projectors.plan import (
    Decoded,
    References,
)
from hwledger.schemas import validation
from hwledger.schemas.events import (
    HardwareSnapshotted,
    NodeHeartbeated,
    RunFinished,
    RunStarted,
)


def is_uuid(value: str) -> bool:
    """A UUID in canonical spelling, the only one stored (PostgreSQL refuses some spellings
    that Python's parser accepts, such as a `urn:uuid:` prefix or `_` between digits)."""
    return validation.CANONICAL_UUID.fullmatch(value) is not None


def storable(value: str | None) -> str | None:
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
    return References(frozenset(e for e in event_ids if is_uuid(e)),
                      frozenset(s for s in snapshot_ids if is_uuid(s)),
                      frozenset((p, r) for p, r in runs
                                if storable(p) is not None and storable(r) is not None),
                      storable_ids(providers))


def storable_ids(ids: Iterable[str]) -> frozenset[str]:
    """Ids a query may carry: one that is not storable belongs to a dead letter."""
    return frozenset(i for i in ids if storable(i) is not None)


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
