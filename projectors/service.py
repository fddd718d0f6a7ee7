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

import gc
import logging
import multiprocessing
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, TypeVar

import psycopg
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from hwledger.projectors.health import DEFAULT_STALL_SECONDS, Health
from hwledger.projectors.logcheck import RECOVERY, log_start_gaps
from hwledger.projectors.metrics import Metrics
from hwledger.projectors.plan import Record
from hwledger.projectors.writer import Fenced, Writer
from hwledger.schemas.db import connect
from hwledger.schemas.errors import UserError
from hwledger.schemas.signatures import AuditorKeys

log = logging.getLogger("hwledger.projector")
T = TypeVar("T")

LOG_CHECK_SECONDS = 5.0
"""How often an idle projector compares its stored offsets with the log's watermarks."""
DRAIN_SECONDS = 0.1
"""How long a projector that exits when caught up waits for more before closing a batch."""
TRANSIENT = (psycopg.OperationalError, psycopg.errors.SerializationFailure,
             psycopg.errors.DeadlockDetected)


@dataclass(frozen=True)
class ProjectorConfig:
    database_url: str
    schema: str
    topic: str
    kafka: dict[str, Any]
    group_id: str = "hwledger-projector"
    batch_size: int = 2000
    batch_seconds: float = 0.5
    park_ttl: timedelta = timedelta(hours=6)
    max_retries: int = 8
    backoff_seconds: float = 0.2
    idle_exit_seconds: float | None = None
    exit_when_caught_up: bool = False
    defer_inventory: bool = False
    partitions: tuple[int, ...] | None = None
    """A fixed share of the topic's partitions instead of a consumer-group subscription (a
    rebuild's replay: no group to form, nothing to rebalance when a process finishes)."""
    auditor_keys: AuditorKeys | None = None
    """The auditors' public keys audits must be signed with; None: audits are not verified."""
    stall_seconds: float = DEFAULT_STALL_SECONDS
    """/healthz fails when the loop has not gone round for this long."""


def consumer_config(config: ProjectorConfig) -> dict[str, Any]:
    """librdkafka settings: manual offsets; an offset the log no longer has is an error, never
    a silent jump to another offset."""
    return {
        "group.id": config.group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "error",
        "session.timeout.ms": 6000,
        "enable.partition.eof": False,
        "log_level": 3,
        **config.kafka,
    }


def backoff(attempt: int, base: float, cap: float = 10.0) -> float:
    """Seconds to wait before retry `attempt` (1-based): exponential, capped."""
    return float(min(cap, base * 2 ** (attempt - 1)))


def fence_for(records: list[Record], positions: dict[int, int | None],
              topic: str) -> dict[tuple[str, int], tuple[int | None, int]]:
    """(topic, partition) -> (stored offset the batch starts from, next offset after it)."""
    last: dict[int, int] = {}
    for r in records:
        last[r.partition] = max(last.get(r.partition, -1), r.offset)
    return {(topic, p): (positions[p], o + 1) for p, o in last.items()}


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
        stored = self._with_retries(lambda: self.writer.stored_offsets(
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
        stored = self._with_retries(lambda: self.writer.stored_offsets(self.config.topic,
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
        recorded = self._with_retries(lambda: self.writer.halted(topic, running))
        gaps = log_start_gaps(self._watermarks(running), self.positions)
        for partition, reason in sorted({**gaps, **recorded}.items()):
            self._halt(partition, reason)

    def _halt(self, partition: int, reason: str) -> None:
        if partition in self.halted or partition not in self.positions:
            return
        self.halted[partition] = reason
        self._with_retries(lambda: self.writer.halt(self.config.topic, partition, reason))
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


def topic_partitions(config: ProjectorConfig) -> list[int]:
    """The partitions of `config.topic`; UserError when the broker does not know the topic."""
    consumer = Consumer(consumer_config(config))
    try:
        metadata = consumer.list_topics(config.topic, timeout=10)
    except KafkaException as exc:
        raise UserError(f"cannot read the partitions of topic {config.topic!r}: {exc}") from exc
    finally:
        consumer.close()
    found = metadata.topics.get(config.topic)
    if found is None or found.error is not None or not found.partitions:
        raise UserError(f"topic {config.topic!r} does not exist; check HWLEDGER_TOPIC")
    return sorted(found.partitions)


def install_signal_handlers(projector: Projector) -> None:
    signal.signal(signal.SIGTERM, projector.stop)
    signal.signal(signal.SIGINT, projector.stop)


GC_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Fewer garbage collections for a process that projects batches.

    Decoding a batch allocates hundreds of thousands of dicts, each counting toward Python's
    generation-0 collection (default: every 700 allocations), and the long-lived objects of the
    process (modules, schemas, caches) would be traversed by every full collection. Freezing
    what exists after start-up and collecting every 50,000 allocations saves ~10-20% of the
    projector's CPU; nothing is kept uncollected. Called by the process entry points only.
    """
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


def _replica(config: ProjectorConfig, metrics_port: int, metrics_host: str) -> None:
    """A replica process: its own consumer, connection and metrics port; SIGTERM stops it."""
    tune_gc()
    metrics = Metrics()
    projector = Projector(config, metrics)
    metrics.serve(metrics_port, metrics_host, projector.health)
    install_signal_handlers(projector)
    raise SystemExit(projector.run())


def start_replicas(configs: Sequence[ProjectorConfig], metrics_port: int = 0,
                   metrics_host: str = "127.0.0.1") -> list[BaseProcess]:
    """Start one more projector process per config (typically the same consumer group).

    The group shares the partitions out, so N processes use N cores; each partition's batches
    stay exactly-once through the offset fence. Replica i (from 1) serves metrics on
    `metrics_port` + i (none when 0). `stop_replicas` sends SIGTERM (each finishes its batch)
    and waits.
    """
    spawn = multiprocessing.get_context("spawn")
    replicas: list[BaseProcess] = [
        spawn.Process(target=_replica, name=f"hwledger-projector-{i}",
                      args=(config, metrics_port + i if metrics_port else 0, metrics_host))
        for i, config in enumerate(configs, start=1)]
    for replica in replicas:
        replica.start()
    return replicas


def stop_replicas(replicas: list[BaseProcess], *, terminate: bool = True) -> int:
    """Wait for every replica (SIGTERM it first with `terminate`); returns the worst exit code.

    Without `terminate` the replicas are expected to end on their own (caught up or idle).
    """
    for replica in replicas:
        if terminate and replica.is_alive():
            replica.terminate()
    for replica in replicas:
        replica.join()
    return max((abs(r.exitcode or 0) for r in replicas), default=0)
