"""The soak: steady producers, the projector and a query load together, in one process.

Producers publish 8-GPU HardwareSnapshotted events through the spool at a fixed rate; a few of
them are latency probes whose provider is then polled through the HTTP API until its
`lastSeenAt` reaches the probe's event time (produce-to-queryable latency). A query thread
keeps bid-screening requests flowing. Resident memory is sampled every second.
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

from hwledger.deploy.config import Settings
from hwledger.deploy.live import LiveSystem, live_system
from hwledger.producers.publisher import Publisher
from hwledger.seeds.demo import demo_fleet_events

PROBES_PER_SECOND = 10


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


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def memory_drift(samples_mb: Sequence[float]) -> float:
    """Median of the last third minus median of the first third of the samples (MB)."""
    if len(samples_mb) < 3:
        return 0.0
    third = len(samples_mb) // 3
    return statistics.median(samples_mb[-third:]) - statistics.median(samples_mb[:third])


def figures(result: SoakResult) -> dict[str, Any]:
    p99 = percentile(result.latencies_s, 0.99)
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
    }


def _snapshots() -> list[dict[str, Any]]:
    """Snapshot templates (the demo fleet's nodes) that the load cycles through."""
    return [d for t, d in demo_fleet_events(datetime.now(UTC)) if t == "HardwareSnapshotted"]


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
        self.templates = _snapshots()
        self.probes: list[tuple[str, datetime]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.last_query_error = ""

    def produce(self, publisher: Publisher) -> None:
        batch = max(1, self.rate // 100)

        def step(tick: int) -> None:
            clock = datetime.now(UTC)
            now = clock.replace(microsecond=clock.microsecond // 1000 * 1000)  # Avro millis
            events = []
            for i in range(batch):
                template = self.templates[(tick * batch + i) % len(self.templates)]
                events.append(("HardwareSnapshotted", template | {
                    "event_id": str(uuid.uuid4()), "occurred_at": now,
                    "provider_id": f"soak-{(tick * batch + i) % 500}"}))
            probe = tick % max(1, 100 // PROBES_PER_SECOND) == 0
            if probe:
                with self.lock:
                    self.probes.append((events[0][1]["provider_id"], now))
            publisher.publish_many(events)
            self.result.published += len(events)

        _every(0.01, self.stop, step)

    def _last_seen(self, owner: str) -> datetime | None:
        seen = self.system.get(f"/v1/providers/{owner}").get("lastSeenAt")
        return None if seen is None else datetime.fromisoformat(seen)

    def check_latency(self) -> None:
        while not self.stop.is_set() or self.probes:
            with self.lock:
                pending = list(self.probes)
            for owner, at in pending:
                try:
                    seen = self._last_seen(owner)
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
                    self.probes.remove((owner, at))
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
