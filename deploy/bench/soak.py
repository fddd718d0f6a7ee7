"""The soak: steady producers, the projector and a query load together, in one process.

Producers publish through the spool at a fixed rate what agents publish: per node a full
8-GPU HardwareSnapshotted first and every `SNAPSHOT_EVERY`-th time, a NodeHeartbeated naming
it otherwise. A few events are latency probes whose provider is then polled through the HTTP
API until its `lastSeenAt` reaches the probe's event time (produce-to-queryable latency). A
query thread keeps bid-screening requests flowing. Resident memory is sampled every second.

Bytes per node and day: every publication's Kafka record size (`record_bytes`: key, Avro value
and the record framing of Kafka's v2 format, before compression, without the batch header
shared by a batch's records) is counted, and beside it the size of the full snapshot the
earlier agent published at that moment instead (the baseline), both scaled to a node that
publishes every `PERIOD_S` seconds for a day.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import psutil

from hwledger.deploy.bench.fleet import demo_snapshots
from hwledger.deploy.bench.stats import percentile
from hwledger.deploy.config import Settings
from hwledger.deploy.live import LiveSystem, live_system
from hwledger.producers.agent import SNAPSHOT_EVERY, heartbeat_publishes_snapshot
from hwledger.producers.publisher import Publisher
from hwledger.producers.runner import heartbeat_of
from hwledger.schemas import codec

PROBES_PER_SECOND = 10
PERIOD_S = 300
DAY_S = 86_400


def _varint_len(value: int) -> int:
    """Bytes of a zigzag varint (Kafka's record fields)."""
    zigzag = (value << 1) ^ (value >> 63)
    length = 1
    while zigzag >= 0x80:
        zigzag >>= 7
        length += 1
    return length


def record_bytes(key: bytes, value: bytes) -> int:
    """One record's size in a Kafka v2 record batch, uncompressed: length, attributes,
    timestamp and offset deltas (one byte each: records of a batch are close), key, value,
    no headers."""
    body = (1 + 1 + 1 + _varint_len(len(key)) + len(key) + _varint_len(len(value)) + len(value)
            + _varint_len(0))
    return _varint_len(body) + body


def per_node_day(total_bytes: int, publications: int) -> float:
    """Mean bytes of a publication, times the publications of one node in a day."""
    return total_bytes / publications * DAY_S / PERIOD_S if publications else 0.0


@dataclass
class SoakResult:
    seconds: float
    rate: int
    published: int = 0
    latencies_s: list[float] = field(default_factory=list)
    lost_probes: int = 0
    queries: int = 0
    query_errors: int = 0
    rss_mb: list[float] = field(default_factory=list)
    last_query_error: str = ""
    wire_bytes: int = 0
    snapshot_wire_bytes: int = 0
    heartbeats: int = 0


def memory_drift(samples_mb: Sequence[float]) -> float:
    """Median of the last third minus median of the first third of the samples (MB)."""
    if len(samples_mb) < 3:
        return 0.0
    third = len(samples_mb) // 3
    return statistics.median(samples_mb[-third:]) - statistics.median(samples_mb[:third])


def figures(result: SoakResult) -> dict[str, Any]:
    p99 = percentile(result.latencies_s, 0.99)
    after = per_node_day(result.wire_bytes, result.published)
    before = per_node_day(result.snapshot_wire_bytes, result.published)
    return {
        "benchmark": "soak", "seconds": round(result.seconds, 1), "rate_goal": result.rate,
        "events_per_second": round(result.published / result.seconds, 1),
        "latency_probes": len(result.latencies_s), "lost_probes": result.lost_probes,
        "latency_p50_ms": round(percentile(result.latencies_s, 0.5) * 1000, 1),
        "latency_p99_ms": round(p99 * 1000, 1),
        "queries": result.queries, "query_errors": result.query_errors,
        "last_query_error": result.last_query_error,
        "rss_start_mb": round(result.rss_mb[0], 1) if result.rss_mb else None,
        "rss_end_mb": round(result.rss_mb[-1], 1) if result.rss_mb else None,
        "rss_drift_mb": round(memory_drift(result.rss_mb), 1),
        "goal_p99_le_1s": p99 <= 1.0 and result.lost_probes == 0,
        "heartbeats": result.heartbeats,
        "heartbeat_bytes_per_node_day": round(after),
        "heartbeat_bytes_per_node_day_before": round(before),
        "heartbeat_bytes_ratio": round(before / after, 2) if after else None,
        "heartbeat_bytes_measure": "Kafka v2 record (key + Avro value + framing), uncompressed",
    }


class NodeLoad:
    """What the soak's nodes publish, as agents do, with the bytes of each publication counted
    into `result` beside those of the snapshot the earlier agent published instead."""

    def __init__(self, templates: Sequence[dict[str, Any]], result: SoakResult) -> None:
        self.templates = templates
        self.result = result
        self.nodes: dict[str, tuple[str, int]] = {}
        """provider -> (its snapshot in effect, heartbeats since)"""

    def publication(self, index: int, now: datetime) -> tuple[str, dict[str, Any]]:
        """The event node `index` (one node of provider `soak-<index>`) publishes at `now`."""
        provider = f"soak-{index}"
        snapshot = self.templates[index % len(self.templates)] | {
            "event_id": str(uuid.uuid4()), "occurred_at": now, "provider_id": provider}
        full = record_bytes(provider.encode(), codec.encode("HardwareSnapshotted", snapshot))
        self.result.snapshot_wire_bytes += full
        current = self.nodes.get(provider)
        if current is None or heartbeat_publishes_snapshot(current[1], SNAPSHOT_EVERY):
            self.nodes[provider] = (snapshot["event_id"], 0)
            self.result.wire_bytes += full
            return "HardwareSnapshotted", snapshot
        self.nodes[provider] = (current[0], current[1] + 1)
        beat = heartbeat_of({"provider_id": provider, "node_id": snapshot["node_id"],
                             "event_id": current[0]}) | {"occurred_at": now}
        self.result.wire_bytes += record_bytes(provider.encode(),
                                               codec.encode("NodeHeartbeated", beat))
        self.result.heartbeats += 1
        return "NodeHeartbeated", beat


def _every(period: float, stop: threading.Event, step: Callable[[int], None]) -> None:
    start = time.monotonic()
    tick = 0
    while not stop.is_set():
        step(tick)
        tick += 1
        delay = start + tick * period - time.monotonic()
        if delay > 0:
            stop.wait(delay)


class _Soak:
    def __init__(self, system: LiveSystem, rate: int, result: SoakResult) -> None:
        self.system = system
        self.rate = rate
        self.result = result
        self.templates = demo_snapshots()
        self.probes: list[tuple[str, datetime]] = []
        self.load = NodeLoad(self.templates, result)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.last_query_error = ""

    def produce(self, publisher: Publisher) -> None:
        batch = max(1, self.rate // 100)

        def step(tick: int) -> None:
            clock = datetime.now(UTC)
            now = clock.replace(microsecond=clock.microsecond // 1000 * 1000)  # Avro millis
            events = [self.load.publication((tick * batch + i) % 500, now)
                      for i in range(batch)]
            probe = tick % max(1, 100 // PROBES_PER_SECOND) == 0
            if probe:
                with self.lock:
                    self.probes.append((events[0][1]["provider_id"], now))
            publisher.publish_many(events)
            self.result.published += len(events)

        _every(0.01, self.stop, step)

    def _last_seen(self, provider_id: str) -> datetime | None:
        seen = self.system.get(f"/v1/providers/{provider_id}").get("lastSeenAt")
        return None if seen is None else datetime.fromisoformat(seen)

    def check_latency(self) -> None:
        while not self.stop.is_set() or self.probes:
            with self.lock:
                pending = list(self.probes)
            for provider_id, at in pending:
                try:
                    seen = self._last_seen(provider_id)
                except OSError:
                    seen = None
                now = datetime.now(UTC)
                if seen is not None and seen >= at:
                    self.result.latencies_s.append((now - at).total_seconds())
                elif now - at < timedelta(seconds=30):
                    continue
                elif seen is None or seen < at:
                    self.result.lost_probes += 1
                with self.lock:
                    self.probes.remove((provider_id, at))
            time.sleep(0.005)

    def query_load(self, request: Any) -> None:
        def step(_: int) -> None:
            try:
                self.system.post("/v1/bid-screening", request)
                self.result.queries += 1
            except OSError as exc:
                self.result.query_errors += 1
                self.last_query_error = str(exc)

        _every(0.05, self.stop, step)

    def sample_memory(self) -> None:
        process = psutil.Process()
        _every(1.0, self.stop,
               lambda _: self.result.rss_mb.append(process.memory_info().rss / 2**20))


def run_soak(settings: Settings, seconds: float, rate: int,
             progress: Callable[[float], None]) -> SoakResult:
    """Run the soak for `seconds` at `rate` events/s on its own topic and schema."""
    suffix = uuid.uuid4().hex[:8]
    settings = replace(settings, topic=f"hwledger.soak.{suffix}", db_schema=f"soak_{suffix}")
    request = json.loads(resources.files("hwledger.seeds").joinpath("demo_request.json")
                         .read_text())
    result = SoakResult(seconds, rate)
    with live_system(settings, group_id=f"soak-{suffix}") as system, \
            Publisher(system.settings.kafka_config(), settings.topic,
                      settings.home / f"soak-spool-{suffix}") as publisher:
        soak = _Soak(system, rate, result)
        publisher.publish_many([("HardwareSnapshotted", soak.templates[0])])
        system.wait_for_events(1)
        threads = [threading.Thread(target=t, daemon=True) for t in (
            lambda: soak.produce(publisher), soak.check_latency,
            lambda: soak.query_load(request), soak.sample_memory)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while (elapsed := time.monotonic() - started) < seconds:
            progress(elapsed)
            time.sleep(0.5)
        soak.stop.set()
        for thread in threads:
            thread.join(40)
        result.seconds = time.monotonic() - started
        result.last_query_error = soak.last_query_error
    return result
