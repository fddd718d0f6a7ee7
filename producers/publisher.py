"""The publisher: durable spool in front of an idempotent Kafka producer.

`publish` checks and encodes an event, appends it to the spool (fsync'd, group commit) and
returns; it never waits for the broker. A background flusher thread hands spooled events to a
confluent-kafka producer (`enable.idempotence=true`, `acks=all`, key = provider_id) in spool
order and removes each one only when its delivery report says the broker has it. When a delivery
fails (broker down past `message.timeout.ms`, a broker that lost its state, a fatal producer
error), the flusher drops the producer, waits with backoff, and starts again from the oldest
unacknowledged event with a fresh producer, so the order per provider holds. Events left in the
spool when a process dies go out with the next publisher that opens the spool. The first
producer is made by the constructor, so a Kafka property librdkafka rejects raises its
KafkaException there, before anything is spooled, not in the flusher thread.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from hwledger.producers.events import EncodedEvent, ProducerSettings, complete, encode_event
from hwledger.producers.spool import FlusherLock, Spool
from hwledger.schemas.errors import UserError

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "compression.type": "zstd",  # batches of snapshots repeat most of their bytes
    "message.timeout.ms": 30_000,
    "log_level": 0,  # connection errors are kept in `last_error` instead of spamming stderr
}
PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)
MAX_IN_FLIGHT = 20_000
READ_BATCH = 5_000
IDLE_WAIT_S = 0.2
LOCK_RETRY_S = 0.5
BACKOFF_S = (0.2, 5.0)


class Publisher:
    """Publishes hwledger events through a durable spool; use as a context manager.

    >>> with Publisher({"bootstrap.servers": "localhost:9092"}, "hwledger.events",
    ...                Path(".hwledger/spool")) as publisher:
    ...     publisher.publish("ProviderRegistered", {"provider_id": "p1", ...})
    """

    def __init__(self, kafka_config: Mapping[str, Any], topic: str, spool_dir: Path) -> None:
        self.topic = topic
        self.spool = Spool(spool_dir)
        self.last_error: str | None = None
        self._config = {**PRODUCER_DEFAULTS, **kafka_config, "error_cb": self._on_error}
        self._lock = FlusherLock(spool_dir)
        self._state = threading.Condition()
        self._closed = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        # flusher-thread state
        self._producer: Producer | None = Producer(self._config)
        self._cursor = 0
        self._in_flight: set[int] = set()
        self._acked: list[int] = []
        self._failure: str | None = None
        self._thread = threading.Thread(target=self._flusher, name="hwledger-flusher",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, settings: ProducerSettings) -> Publisher:
        """The publisher for the configured broker and topic, spooling under HOME/spool."""
        return cls(settings.kafka_config(), settings.topic, settings.home / "spool")

    # ---- API ------------------------------------------------------------------------------

    def publish(self, event_type: str, data: Mapping[str, Any]) -> str:
        """Accept one event (event_id, occurred_at and producer filled in when absent);
        returns its event_id once it is durably spooled."""
        return self.publish_many([(event_type, data)])[0]

    def publish_many(self, events: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
        """Accept several events with one spool commit; none is accepted if one is invalid."""
        encoded = [encode_event(event_type, complete(data)) for event_type, data in events]
        self.publish_encoded(encoded)
        return [e.event_id for e in encoded]

    def publish_encoded(self, events: Sequence[EncodedEvent]) -> None:
        """Accept already checked and encoded events."""
        if self._closed:
            raise UserError("the publisher is closed")
        self.spool.append(events)
        self._wake.set()

    def pending(self) -> int:
        """Events in the spool not yet acknowledged by the broker."""
        return self.spool.pending_through(self.spool.last_seq())

    def flush(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for the broker to acknowledge every event spooled
        before this call (this publisher's and older ones, delivered first in FIFO order);
        returns how many of them still wait (0 = all delivered)."""
        deadline = time.monotonic() + timeout
        target = self.spool.last_seq()
        while True:
            left = self.spool.pending_through(target)
            remaining = deadline - time.monotonic()
            if left == 0 or remaining <= 0:
                return left
            self._wake.set()
            with self._state:
                self._state.wait(min(0.05, remaining))

    def close(self, timeout: float = 10.0) -> int:
        """Flush for up to `timeout` seconds, stop the flusher; returns events left spooled
        (they go out with the next publisher on this spool)."""
        if self._closed:
            return 0
        left = self.flush(timeout)
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self.spool.close()
        return left

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ---- flusher thread -------------------------------------------------------------------

    def _on_error(self, error: KafkaError) -> None:
        self.last_error = error.str()
        if error.fatal():
            self._failure = error.str()

    def _on_delivery(self, seq: int, error: KafkaError | None, _message: Message) -> None:
        self._in_flight.discard(seq)
        if error is None:
            self._acked.append(seq)
        elif error.code() not in PURGED:  # purged by us: the event stays spooled
            self._failure = self._failure or error.str()
            self.last_error = error.str()

    def _flusher(self) -> None:
        backoff = BACKOFF_S[0]
        try:
            while not self._stop.is_set():
                if not self._lock.try_acquire():
                    self._stop.wait(LOCK_RETRY_S)
                    continue
                sent = self._send()
                if self._producer is not None:
                    self._producer.poll(0 if sent else 0.02 if self._in_flight else 0)
                if self._settle():
                    backoff = BACKOFF_S[0]
                if self._failure is not None:
                    self._restart_producer()
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, BACKOFF_S[1])
                elif not sent and not self._in_flight:
                    self._wake.wait(IDLE_WAIT_S)
                    self._wake.clear()
        except Exception as exc:  # e.g. the spool's disk failed: say so, keep what is spooled
            self.last_error = f"the flusher stopped: {type(exc).__name__}: {exc}"
        finally:
            self._drop_producer()
            self._settle()
            self._lock.release()

    def _send(self) -> int:
        room = MAX_IN_FLIGHT - len(self._in_flight)
        if room <= 0:
            return 0
        events = self.spool.read_after(self._cursor, min(room, READ_BATCH))
        if events and self._producer is None:
            self._producer = Producer(self._config)
        sent = 0
        for event in events:
            assert self._producer is not None
            try:
                self._producer.produce(self.topic, key=event.provider_id.encode(),
                                       value=event.value,
                                       on_delivery=functools.partial(self._on_delivery, event.seq))
            except BufferError:
                break
            except Exception as exc:  # a producer that cannot take messages any more
                self._failure = str(exc)
                break
            self._in_flight.add(event.seq)
            self._cursor = event.seq
            sent += 1
        return sent

    def _settle(self) -> int:
        """Remove acknowledged events from the spool; how many there were."""
        acked, self._acked = self._acked, []
        if acked:
            self.spool.remove(acked)
            with self._state:
                self._state.notify_all()
        return len(acked)

    def _drop_producer(self) -> None:
        """Purge and drop the producer; acknowledgements that already arrived still count."""
        if self._producer is not None:
            self._producer.purge()
            self._producer.poll(0)
            self._producer = None
        self._in_flight.clear()

    def _restart_producer(self) -> None:
        """After a failed delivery: drop the producer, resend from the oldest unacked event."""
        self.last_error = self._failure
        self._drop_producer()
        self._settle()
        self._failure = None
        self._cursor = 0
