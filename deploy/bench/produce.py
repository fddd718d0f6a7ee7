"""`hwledger bench produce`: what the durable spool costs, measured against raw Kafka.

The same encoded HardwareSnapshotted events (8 GPUs each) are sent to the same broker twice per
round: by a raw confluent-kafka producer (idempotent, acks=all, delivery reports checked) and
through the Publisher (spool append + fsync in batches, delivery, removal). Both clocks stop
when the broker acknowledged the last event. Rounds alternate the order; medians are reported.
Also: accept rate of one-event `publish` calls (one fsync each), and the probe's time without
NVML.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from hwledger.producers.events import EncodedEvent, encode_event
from hwledger.producers.nvml import RawGpu
from hwledger.producers.probe import Prober, gpu_record
from hwledger.producers.publisher import PRODUCER_DEFAULTS, Publisher

H100_SXM = RawGpu(name="NVIDIA H100 80GB HBM3", pci_vendor_id="10de", pci_device_id="2330",
                  pci_subsystem_id="16c110de", vram_bytes=85520809984, max_link=(5, 16),
                  current_link=(5, 16), power_limit_w=700)


@dataclass(frozen=True)
class Figures:
    """One round's rates in events per second."""

    raw: float
    spool: float


def snapshot_events(count: int, providers: int = 16) -> list[EncodedEvent]:
    """`count` distinct 8-GPU snapshots of this host spread over `providers` provider ids."""
    base = Prober("bench-provider", "bench-node", open_nvml=None).probe().snapshot
    base["gpus"] = [gpu_record(slot, H100_SXM) for slot in range(8)]
    return [encode_event("HardwareSnapshotted", {
        **base, "event_id": str(uuid.uuid4()), "provider_id": f"provider-{n % providers}",
        "node_id": f"node-{n % (providers * 4)}"}) for n in range(count)]


def raw_rate(config: Mapping[str, Any], topic: str, events: Sequence[EncodedEvent]) -> float:
    """Events/s of a plain idempotent producer sending the same bytes, every report checked."""
    failures: list[str] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error.str())

    producer = Producer({**PRODUCER_DEFAULTS, **config})
    started = time.perf_counter()
    for event in events:
        while True:
            try:
                producer.produce(topic, key=event.provider_id.encode(), value=event.value,
                                 on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    left = producer.flush(120)
    elapsed = time.perf_counter() - started
    if left or failures:
        raise RuntimeError(f"raw producer: {left} undelivered, failures {failures[:3]}")
    return len(events) / elapsed


def spool_rate(config: Mapping[str, Any], topic: str, events: Sequence[EncodedEvent],
               batch: int) -> float:
    """Events/s through the Publisher: spooled in batches of `batch`, until all acknowledged."""
    with tempfile.TemporaryDirectory(prefix="hwledger-bench-spool-") as spool_dir:
        publisher = Publisher(config, topic, Path(spool_dir))
        started = time.perf_counter()
        for start in range(0, len(events), batch):
            publisher.publish_encoded(events[start:start + batch])
        left = publisher.flush(120)
        elapsed = time.perf_counter() - started
        publisher.close(0)
    if left:
        raise RuntimeError(f"publisher: {left} events undelivered ({publisher.last_error})")
    return len(events) / elapsed


def single_publish_rate(config: Mapping[str, Any], topic: str,
                        events: Sequence[EncodedEvent]) -> float:
    """Accepted events/s when every call spools one event (one fsync each, no batching)."""
    with tempfile.TemporaryDirectory(prefix="hwledger-bench-spool-") as spool_dir:
        publisher = Publisher(config, topic, Path(spool_dir))
        started = time.perf_counter()
        for event in events:
            publisher.publish_encoded([event])
        elapsed = time.perf_counter() - started
        publisher.close(60)
    return len(events) / elapsed


def probe_ms(samples: int) -> float:
    """Median milliseconds of one probe without NVML (CPU, memory, board, OS, disk, /sys)."""
    prober = Prober("bench-provider", "bench-node", open_nvml=None)
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        prober.probe()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def run(config: Mapping[str, Any], new_topic: Callable[[], str], *, events: int, batch: int,
        rounds: int, single: int, say: Callable[[str], None]) -> dict[str, Any]:
    """Measure; returns the figures (the caller prints them as one JSON line)."""
    started = time.perf_counter()
    encoded = snapshot_events(events)
    encode_rate = events / (time.perf_counter() - started)
    size = statistics.mean(len(e.value) for e in encoded)
    say(f"{events} snapshot events, 8 GPUs each, {size:.0f} bytes; encoded + checked at "
        f"{encode_rate:,.0f} events/s")
    results = []
    for n in range(rounds):
        topic = new_topic()
        if n % 2 == 0:
            raw = raw_rate(config, topic, encoded)
            spool = spool_rate(config, topic, encoded, batch)
        else:
            spool = spool_rate(config, topic, encoded, batch)
            raw = raw_rate(config, topic, encoded)
        results.append(Figures(raw, spool))
        say(f"round {n + 1}: raw producer {raw:,.0f} events/s, spool on {spool:,.0f} events/s "
            f"({spool / raw:.2f} of raw)")
    raw_median = statistics.median(r.raw for r in results)
    spool_median = statistics.median(r.spool for r in results)
    single_rate = single_publish_rate(config, new_topic(), encoded[:single])
    say(f"one event per publish call (one fsync each): {single_rate:,.0f} events/s accepted")
    probe = probe_ms(50)
    say(f"probe without NVML: {probe:.2f} ms median of 50")
    return {
        "benchmark": "produce", "events": events, "gpus_per_snapshot": 8,
        "event_bytes": round(size), "batch": batch, "rounds": rounds,
        "raw_events_per_s": round(raw_median), "spool_events_per_s": round(spool_median),
        "spool_to_raw": round(spool_median / raw_median, 3),
        "single_publish_events_per_s": round(single_rate),
        "encode_events_per_s": round(encode_rate),
        "probe_ms_median_no_nvml": round(probe, 3),
        "goals_met": {"spool_10k_per_s": spool_median >= 10_000,
                      "spool_quarter_of_raw": spool_median / raw_median >= 0.25,
                      "probe_50ms": probe <= 50},
    }
