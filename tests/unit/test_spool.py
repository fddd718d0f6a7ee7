"""The durable spool: order, removal, persistence, group commit, the flusher lock."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

from hwledger.producers.events import EncodedEvent
from hwledger.producers.spool import (
    FlusherLock,
    GroupCommit,
    Spool,
    consecutive_runs,
    flusher_pid,
)


def event(n: int, provider: str = "p1") -> EncodedEvent:
    return EncodedEvent("ProviderRegistered", f"e{n}", provider, f"v{n}".encode())


def test_events_come_back_in_order_and_leave_only_when_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert spool.last_seq() == 0
    assert spool.append([event(1), event(2, "p2")]) == 2
    assert spool.append([event(3)]) == 3
    assert [(e.seq, e.event_id, e.provider_id, e.value) for e in spool.read_after(0, 10)] == [
        (1, "e1", "p1", b"v1"), (2, "e2", "p2", b"v2"), (3, "e3", "p1", b"v3")]
    assert [e.seq for e in spool.read_after(1, 1)] == [2]
    spool.remove([2])
    assert [e.seq for e in spool.read_after(0, 10)] == [1, 3]
    assert spool.pending_through(2) == 1
    status = spool.status()
    assert (status.pending, status.pending_bytes, status.by_provider) == (2, 4, {"p1": 2})
    assert status.flusher_pid is None


def test_acknowledged_numbers_are_removed_as_ranges(tmp_path: Path) -> None:
    assert consecutive_runs([5, 1, 2, 3, 7, 6, 2]) == [(1, 3), (5, 7)]
    assert consecutive_runs([]) == []
    spool = Spool(tmp_path)
    spool.append([event(n) for n in range(10)])
    spool.remove([2, 3, 4, 9, 7])
    assert [e.seq for e in spool.read_after(0, 100)] == [1, 5, 6, 8, 10]


def test_commits_are_fsynced_write_ahead_log(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert spool._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert spool._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL


def test_sequence_numbers_are_never_reused(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([event(1), event(2)])
    spool.remove([1, 2])
    assert spool.append([event(3)]) == 3


def test_spooled_events_survive_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([event(n) for n in range(100)])
    spool.remove([1])
    spool.close()
    reopened = Spool(tmp_path)
    assert [e.event_id for e in reopened.read_after(0, 1000)] == [f"e{n}" for n in range(1, 100)]


def test_group_commit_writes_concurrent_submissions_together() -> None:
    writes: list[int] = []
    entered, release = threading.Event(), threading.Event()
    total = 0

    def write(rows: list[EncodedEvent]) -> int:
        nonlocal total
        entered.set()
        release.wait(5)
        writes.append(len(rows))
        total += len(rows)
        return total

    group = GroupCommit(write)
    results: dict[int, int] = {}

    def submit(n: int, size: int) -> None:
        results[n] = group.submit([event(n)] * size)

    first = threading.Thread(target=submit, args=(0, 1))
    first.start()
    entered.wait(5)  # the first writer is inside its commit; the others queue behind it
    others = [threading.Thread(target=submit, args=(n, n)) for n in (1, 2, 3)]
    for t in others:
        t.start()
    while len(group._queue) < 3:
        threading.Event().wait(0.001)
    release.set()
    for t in [first, *others]:
        t.join(5)
    assert writes == [1, 6]
    assert results[0] == 1
    spans = sorted((results[n] - n + 1, results[n]) for n in (1, 2, 3))
    assert spans[0][0] == 2 and spans[-1][1] == 7  # each caller's rows, contiguous, in one write
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(spans))


def test_a_failed_write_reaches_every_waiting_caller() -> None:
    def write(rows: list[EncodedEvent]) -> int:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        GroupCommit(write).submit([event(1)])


def test_one_flusher_per_spool(tmp_path: Path) -> None:
    first, second = FlusherLock(tmp_path), FlusherLock(tmp_path)
    assert first.try_acquire() and first.held
    assert not second.try_acquire()
    assert flusher_pid(tmp_path) is not None
    first.release()
    assert flusher_pid(tmp_path) is None
    assert second.try_acquire()
    second.release()
