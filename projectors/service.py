"""The projector service: a Kafka consumer-group loop around the Writer (the imperative shell).

- On assignment it seeks every partition to the next offset stored in Postgres (Kafka's
  committed offsets are only advisory, committed after each batch for lag tooling).
- Batches close at `batch_size` messages or `batch_seconds`, whichever comes first (a projector
  that exits when caught up also closes one when the consumer has nothing more within
  DRAIN_SECONDS); only one batch is held in memory.
- `Writer.apply` commits the rows and the offsets together; `Fenced` (the partition moved on
  elsewhere) drops the batch and re-seeks to the stored offsets.
- Transient Postgres failures (lost connection, serialization failure, deadlock) are retried
  with exponential backoff, reconnecting, up to `max_retries`; then the service exits 1.
- SIGTERM/SIGINT: the batch in flight is written, the consumer leaves the group, exit 0.
- A lost or truncated log (`logcheck`): checked after each assignment, when the broker cannot
  serve a stored offset (`auto.offset.reset=error`) and on an empty poll at most every
  LOG_CHECK_SECONDS (never in the hot path of a busy partition). That
  partition stops (paused, recorded in `projection_offsets.halted_reason`, an error log line,
  the `log_lost` metric) until the operator resets its offset and restarts the projector; a
  replay that exits when caught up fails instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TypeVar

import psycopg
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from hwledger.projectors.config import ProjectorConfig, consumer_config
from hwledger.projectors.health import Health
from hwledger.projectors.logcheck import RECOVERY, log_start_gaps
from hwledger.projectors.metrics import Metrics
from hwledger.projectors.offsets import Fenced, fence_for
from hwledger.projectors.plan import Record
from hwledger.projectors.writer import Writer
from hwledger.schemas.db import connect
from hwledger.schemas.errors import UserError

log = logging.getLogger("hwledger.projector")
T = TypeVar("T")

LOG_CHECK_SECONDS = 5.0
"""How often an idle projector compares its stored offsets with the log's watermarks."""
DRAIN_SECONDS = 0.1
"""How long a projector that exits when caught up waits for more before closing a batch."""
TRANSIENT = (psycopg.OperationalError, psycopg.errors.SerializationFailure,
             psycopg.errors.DeadlockDetected)


def backoff(attempt: int, base: float, cap: float = 10.0) -> float:
    """Seconds to wait before retry `attempt` (1-based): exponential, capped."""
    return float(min(cap, base * 2 ** (attempt - 1)))


class Projector:
    """One projector instance: owns a consumer, a database connection and a Writer."""

    def __init__(self, config: ProjectorConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.health = Health(config.stall_seconds)
        self.stopping = False
        self.positions: dict[int, int | None] = {}
        self.halted: dict[int, str] = {}
        self.check_due = False
        self.checked_at = 0.0
        self.assigned_at: float | None = None
        self.pending: list[Record] = []
        self.conn = connect(config.database_url, config.schema)
        self.writer = Writer(self.conn, config.park_ttl,
                             defer_inventory=config.defer_inventory,
                             auditor_keys=config.auditor_keys)
        self.consumer = Consumer(consumer_config(config))

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self.stopping = True

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        stored = self._with_retries(lambda: self.writer.offsets.stored(
            self.config.topic, [p.partition for p in partitions]))
        for p in partitions:
            offset = stored.get(p.partition)
            self.positions[p.partition] = offset
            p.offset = OFFSET_BEGINNING if offset is None else offset
        consumer.assign(partitions)
        self.health.assigned = True
        self.assigned_at = time.monotonic()
        log.info("assigned %s", {p.partition: p.offset for p in partitions})
        self.check_due = True  # check the log before the next batch (not inside the callback)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            self.positions.pop(p.partition, None)
            self.halted.pop(p.partition, None)
        self.pending.clear()
        consumer.unassign()

    def _reconnect(self) -> None:
        try:
            self.conn.close()
        finally:
            self.conn = connect(self.config.database_url, self.config.schema)
            self.writer.conn = self.conn

    def _with_retries(self, action: Callable[[], T]) -> T:
        for attempt in range(1, self.config.max_retries + 1):
            try:
                done = action()
                self.health.database_ok = True
                return done
            except TRANSIENT as exc:
                self.health.database_ok = False
                if attempt == self.config.max_retries:
                    raise
                wait = backoff(attempt, self.config.backoff_seconds)
                log.warning("transient database error (%s); retry %d in %.1fs",
                            type(exc).__name__, attempt, wait)
                self.metrics.retries.inc()
                time.sleep(wait)
                try:
                    self._reconnect()
                except UserError as down:
                    log.warning("%s", down)
        raise AssertionError("unreachable")

    def _poll_batch(self) -> list[Record]:
        """Messages of assigned partitions, from their stored positions on, up to one batch.

        A rebalance during the poll empties the batch (`_on_revoke`): after it, every
        partition is re-read from its stored offset, so nothing is lost or taken twice.
        """
        self.pending = []
        deadline = time.monotonic() + self.config.batch_seconds
        drain = DRAIN_SECONDS if self.config.exit_when_caught_up else self.config.batch_seconds
        while len(self.pending) < self.config.batch_size and not self.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            wanted = min(500, self.config.batch_size - len(self.pending))
            messages = self.consumer.consume(wanted, timeout=min(left, drain))
            for message in messages:
                self._take(message, self.pending)
            if self.config.exit_when_caught_up and len(messages) < wanted:
                break  # drained: a replay does not wait for messages that may never come
        return self.pending

    def _take(self, message: Message, records: list[Record]) -> None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise UserError(f"Kafka consumer failed: {error.str()}")
            partition = message.partition()
            if error.code() == KafkaError._AUTO_OFFSET_RESET and partition is not None:
                self._halt(partition, f"partition {partition}: {error.str()}")
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("Kafka: %s", error.str())
            return
        partition, offset = message.partition(), message.offset()
        assert partition is not None and offset is not None
        position = self.positions.get(partition)
        if (partition not in self.positions or partition in self.halted
                or (position is not None and offset < position)):
            return
        records.append(Record(message.topic() or self.config.topic, partition, offset,
                              message.value() or b""))

    def _apply(self, records: list[Record]) -> None:
        fence = fence_for(records, self.positions, self.config.topic)
        started = time.monotonic()
        try:
            plan = self._with_retries(lambda: self.writer.apply(records, fence))
        except Fenced as exc:
            log.warning("fenced: %s; re-seeking to the stored offsets", exc)
            self.metrics.fenced.inc()
            self._reseek(sorted({p for _, p in fence}))
            return
        self.metrics.observe_batch(plan, len(records), time.monotonic() - started)
        offsets = []
        for (topic, partition), (_, after) in fence.items():
            self.positions[partition] = after
            offsets.append(TopicPartition(topic, partition, after))
            self._update_lag(topic, partition, after)
        try:
            self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:  # Kafka commits are advisory only
            log.debug("advisory commit failed: %s", exc)

    def _update_lag(self, topic: str, partition: int, position: int) -> None:
        try:
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(topic, partition), cached=True)
        except KafkaException:  # lag is best effort
            return
        if high >= 0:
            self.metrics.lag.labels(str(partition)).set(max(0, high - position))

    def _reseek(self, partitions: list[int]) -> None:
        stored = self._with_retries(lambda: self.writer.offsets.stored(self.config.topic,
                                                                       partitions))
        for partition, offset in stored.items():
            if partition not in self.positions:
                continue
            self.positions[partition] = offset
            try:
                self.consumer.seek(TopicPartition(self.config.topic, partition,
                                                  OFFSET_BEGINNING if offset is None
                                                  else offset))
            except KafkaException as exc:  # a revoked partition is fine to skip
                log.info("seek %d skipped: %s", partition, exc)

    def _watermarks(self, partitions: Sequence[int]) -> dict[int, tuple[int, int]]:
        """The watermarks the consumer's fetches last reported (no broker round trip; a
        partition not fetched yet is left for a later check)."""
        found = {}
        for partition in partitions:
            low, high = self.consumer.get_watermark_offsets(
                TopicPartition(self.config.topic, partition), cached=True)
            if low >= 0 and high >= 0:
                found[partition] = (low, high)
        return found

    def _check_log(self) -> None:
        """Stop the partitions whose log starts after their stored offset or that are recorded
        as stopped (by this or an earlier projector)."""
        self.check_due, self.checked_at = False, time.monotonic()
        topic, running = self.config.topic, sorted(set(self.positions) - set(self.halted))
        recorded = self._with_retries(lambda: self.writer.offsets.halted(topic, running))
        gaps = log_start_gaps(self._watermarks(running), self.positions)
        for partition, reason in sorted({**gaps, **recorded}.items()):
            self._halt(partition, reason)

    def _halt(self, partition: int, reason: str) -> None:
        if partition in self.halted or partition not in self.positions:
            return
        self.halted[partition] = reason
        self._with_retries(lambda: self.writer.offsets.halt(self.config.topic, partition, reason))
        self.metrics.log_lost.labels(str(partition)).set(1)
        log.error("%s; partition %d stopped: %s", reason, partition,
                  RECOVERY.format(partition=partition))
        self.consumer.pause([TopicPartition(self.config.topic, partition)])
        if self.config.exit_when_caught_up:
            raise UserError(f"{reason}; {RECOVERY.format(partition=partition)}")

    def _done(self, idle_since: float) -> bool:
        """Nothing arrived: stop when caught up or idle long enough (when configured). Idle
        counts from the last batch or assignment: joining the group (seconds on a fresh
        broker, whose group coordinator is still loading) is not idleness."""
        idle = self.config.idle_exit_seconds
        if idle is not None and self.assigned_at is not None \
                and time.monotonic() - max(idle_since, self.assigned_at) > idle:
            return True
        return self.config.exit_when_caught_up and self._caught_up()

    def _caught_up(self) -> bool:
        """Every assigned partition is projected up to its current high watermark."""
        if not self.positions:
            return False
        for partition, position in self.positions.items():
            if partition in self.halted:
                return False
            try:
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(self.config.topic, partition), timeout=5)
            except KafkaException:
                return False
            if (position or 0) < high:
                return False
        return True

    def run(self) -> int:
        """Consume until stopped (SIGTERM), caught up or idle (when configured); exit code."""
        if self.config.partitions is None:
            self.consumer.subscribe([self.config.topic], on_assign=self._on_assign,
                                    on_revoke=self._on_revoke)
        else:
            self._on_assign(self.consumer, [TopicPartition(self.config.topic, p)
                                            for p in self.config.partitions])
        idle_since = time.monotonic()
        try:
            while not self.stopping:
                self.health.last_loop = time.monotonic()
                if self.check_due:
                    self._check_log()
                records = self._poll_batch()
                if records:
                    self._apply(records)
                    idle_since = time.monotonic()
                elif self._done(idle_since):
                    break
                elif time.monotonic() - self.checked_at > LOG_CHECK_SECONDS:
                    self._check_log()
        finally:
            self.consumer.close()
            self.conn.close()
        return 0


