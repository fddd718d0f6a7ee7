"""The durable on-disk spool in front of Kafka.

An event is accepted only once it is on disk: it is appended to a SQLite database in WAL mode
with `synchronous=FULL` (the commit fsyncs), and removed only after the broker acknowledged it.
Concurrent appends share one commit (group commit), so throughput does not pay one fsync per
event. Sequence numbers (AUTOINCREMENT, never reused) give the delivery order: FIFO over the
whole spool, hence per provider. Several processes may append to one spool; one of them at a
time (the holder of `flusher.lock`) delivers.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from hwledger.producers.events import EncodedEvent
from hwledger.schemas.errors import UserError

DB_NAME = "spool.sqlite3"
LOCK_NAME = "flusher.lock"
SCHEMA = """
CREATE TABLE IF NOT EXISTS spooled (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    provider_id TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    value       BLOB NOT NULL,
    spooled_at  REAL NOT NULL
)
"""


@dataclass(frozen=True)
class SpooledEvent:
    """One event waiting for the broker's acknowledgement."""

    seq: int
    provider_id: str
    event_type: str
    event_id: str
    value: bytes


@dataclass(frozen=True)
class SpoolStatus:
    """What waits in a spool, and which process delivers it."""

    path: str
    pending: int
    pending_bytes: int
    oldest_spooled_at: float | None
    by_provider: dict[str, int]
    flusher_pid: int | None


@dataclass
class _Ticket:
    rows: Sequence[EncodedEvent]
    done: threading.Event = field(default_factory=threading.Event)
    last_seq: int = 0
    error: BaseException | None = None


def consecutive_runs(numbers: Iterable[int]) -> list[tuple[int, int]]:
    """[5, 1, 2, 3, 7, 6] -> [(1, 3), (5, 7)]: sorted runs of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    for n in sorted(set(numbers)):
        if runs and runs[-1][1] == n - 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


class GroupCommit:
    """Batches concurrent submissions into one write: the first caller in writes for everyone
    who queued behind it, then wakes them."""

    def __init__(self, write: Callable[[list[EncodedEvent]], int]) -> None:
        self._write = write
        self._lock = threading.Lock()
        self._queue: list[_Ticket] = []
        self._busy = False

    def submit(self, rows: Sequence[EncodedEvent]) -> int:
        """Write `rows` durably; returns the sequence number of the last one."""
        ticket = _Ticket(rows)
        with self._lock:
            self._queue.append(ticket)
            leader = not self._busy
            self._busy = True
        if leader:
            self._lead()
        ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error
        return ticket.last_seq

    def _lead(self) -> None:
        while True:
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._busy = False
                    return
            try:
                last = self._write([row for t in batch for row in t.rows])
            except BaseException as exc:  # handed to every waiting caller
                for t in batch:
                    t.error = exc
                    t.done.set()
                continue
            remaining = sum(len(t.rows) for t in batch)
            for t in batch:
                remaining -= len(t.rows)
                t.last_seq = last - remaining
                t.done.set()


class Spool:
    """Append, read in order, and remove acknowledged events; safe across threads."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / DB_NAME
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None,
                                       check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot open the spool {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._group = GroupCommit(self._insert)

    def _insert(self, rows: list[EncodedEvent]) -> int:
        now = time.time()
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT INTO spooled (provider_id, event_type, event_id, value, spooled_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(r.provider_id, r.event_type, r.event_id, r.value, now) for r in rows])
            row = self._db.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'spooled'").fetchone()
        return int(row[0])

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def append(self, events: Sequence[EncodedEvent]) -> int:
        """Durably append `events` (fsync'd on return); the last one's sequence number."""
        if not events:
            return 0
        try:
            return self._group.submit(events)
        except sqlite3.Error as exc:
            raise UserError(f"cannot write the spool {self.path}: {exc}") from exc

    def read_after(self, seq: int, limit: int) -> list[SpooledEvent]:
        """Up to `limit` events after sequence number `seq`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, provider_id, event_type, event_id, value FROM spooled "
                "WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)).fetchall()
        return [SpooledEvent(*row) for row in rows]

    def remove(self, seqs: Sequence[int]) -> None:
        """Forget acknowledged events (one range delete per run of consecutive numbers)."""
        if not seqs:
            return
        with self._lock, self._transaction():
            self._db.executemany("DELETE FROM spooled WHERE seq BETWEEN ? AND ?",
                                 consecutive_runs(seqs))

    def last_seq(self) -> int:
        """The sequence number of the newest event ever appended (0 for a new spool)."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'spooled'").fetchone()
        return 0 if row is None else int(row[0])

    def pending_through(self, seq: int) -> int:
        """How many events up to sequence number `seq` still wait."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM spooled WHERE seq <= ?",
                                        (seq,)).fetchone()[0])

    def status(self) -> SpoolStatus:
        with self._lock:
            count, size, oldest = self._db.execute(
                "SELECT count(*), coalesce(sum(length(value)), 0), min(spooled_at) "
                "FROM spooled").fetchone()
            providers = dict(self._db.execute(
                "SELECT provider_id, count(*) FROM spooled GROUP BY provider_id "
                "ORDER BY provider_id").fetchall())
        return SpoolStatus(str(self.path), int(count), int(size), oldest, providers,
                           flusher_pid(self.directory))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class FlusherLock:
    """The one-deliverer-per-spool lock: an flock on `flusher.lock` holding the owner's pid."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._file: IO[str] | None = None

    def try_acquire(self) -> bool:
        if self._file is not None:
            return True
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def flusher_pid(directory: Path) -> int | None:
    """The pid of the process delivering from this spool, or None when none does."""
    path = directory / LOCK_NAME
    if not path.exists():
        return None
    with path.open("r", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None
