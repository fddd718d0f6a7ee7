"""The publisher against a real broker: round trip, broker outage, SIGKILL, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from hwledger.deploy.cli import main
from hwledger.deploy.kafka_admin import ensure_topic
from hwledger.deploy.local_processes import free_port
from hwledger.producers.nvml import RecordedNvml
from hwledger.producers.probe import Prober
from hwledger.producers.publisher import Publisher
from hwledger.schemas import codec
from tests import factories as f
from tests.servers import embedded_broker
from tests.waiting import wait_until

FIXTURES = Path(__file__).parent.parent / "fixtures" / "nvml"
REPO = Path(__file__).resolve().parents[2]
FAST_RETRY = {"message.timeout.ms": 3000}


def consume(kafka_config: dict[str, Any], topic: str, expected: int,
            timeout: float = 30.0) -> list[tuple[bytes, bytes]]:
    """(key, value) of every message in `topic`: read until `expected` arrived, then on to
    each partition's high watermark at that moment (read once), so a duplicate written by
    then would show."""
    consumer = Consumer({**kafka_config, "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    partitions = [TopicPartition(topic, p, OFFSET_BEGINNING)
                  for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions]
    consumer.assign(partitions)
    found: list[tuple[bytes, bytes]] = []

    def polling(done: Callable[[], bool]) -> Callable[[], bool]:
        def condition() -> bool:  # read one message, then ask
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                found.append((message.key() or b"", message.value() or b""))
            return done()
        return condition

    wait_until(polling(lambda: len(found) >= expected), timeout,
               f"{expected} messages in {topic}", interval=0)
    highs = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in partitions}

    def at_high_watermarks() -> bool:
        return all(max(0, p.offset) >= highs[p.partition]
                   for p in consumer.position(partitions))

    wait_until(polling(at_high_watermarks), timeout,
               f"the rest of {topic} up to its high watermarks", interval=0)
    consumer.close()
    return found


@pytest.mark.slow
def test_published_snapshot_decodes_to_the_probe_payload(
        kafka_config: dict[str, Any], topic: str, home: Path) -> None:
    answers = json.loads((FIXTURES / "h100_sxm_x8.json").read_text("utf-8"))
    snapshot = Prober("provider-a", "node-1", open_nvml=lambda: RecordedNvml(answers)
                      ).probe().snapshot
    with Publisher(kafka_config, topic, home / "spool") as publisher:
        assert publisher.publish("HardwareSnapshotted", snapshot) == snapshot["event_id"]
        assert publisher.flush(20) == 0
        assert publisher.spool.status().pending == 0
    [(key, value)] = consume(kafka_config, topic, 1)
    assert key == b"provider-a"
    event = codec.decode(value)
    assert event.type == "HardwareSnapshotted"
    assert event.data == snapshot


@pytest.mark.slow
def test_broker_outage_spools_and_delivers_everything_once_in_order(tmp_path: Path) -> None:
    port = free_port()
    topic = "hwledger.outage"
    with embedded_broker(tmp_path / "first", port) as bootstrap:
        config = {"bootstrap.servers": bootstrap}
        ensure_topic(config, topic, 3)
        publisher = Publisher({**config, **FAST_RETRY}, topic, tmp_path / "spool")
        publisher.publish("ProviderRegistered", f.provider_registered("warm-up"))
        assert publisher.flush(20) == 0
    sent: dict[str, list[str]] = defaultdict(list)
    slowest = 0.0
    started = time.monotonic()
    for n in range(1000):
        provider = f"provider-{n % 7}"
        t = time.perf_counter()
        event_id = publisher.publish("ProviderRegistered",
                                     f.provider_registered(provider, attributes={"n": str(n)}))
        slowest = max(slowest, time.perf_counter() - t)
        sent[provider].append(event_id)
    assert time.monotonic() - started < 20 and slowest < 1.0  # spooled, not waiting on Kafka
    assert publisher.pending() == 1000
    with embedded_broker(tmp_path / "second", port):
        ensure_topic(config, topic, 3)  # Tansu is memory-only: the restarted broker is empty
        assert publisher.flush(60) == 0, publisher.last_error
        publisher.close()
        received: dict[str, list[str]] = defaultdict(list)
        for key, value in consume(config, topic, 1000):
            received[key.decode()].append(codec.decode(value).data["event_id"])
    assert dict(received) == dict(sent)


SPOOLING_CHILD = """
import json, sys
from pathlib import Path
from hwledger.producers.publisher import Publisher
from tests import factories as f
publisher = Publisher({"bootstrap.servers": sys.argv[1]}, sys.argv[2], Path(sys.argv[3]))
ids = [publisher.publish("ProviderRegistered", f.provider_registered(f"p{n % 3}"))
       for n in range(200)]
print(json.dumps(ids), flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
def test_sigkill_with_events_spooled_loses_nothing(
        kafka_config: dict[str, Any], topic: str, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    dead_broker = f"127.0.0.1:{free_port()}"
    child = subprocess.Popen(
        [sys.executable, "-c", SPOOLING_CHILD, dead_broker, topic, str(spool_dir)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert child.stdout is not None
    accepted = json.loads(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    with Publisher(kafka_config, topic, spool_dir) as publisher:
        assert publisher.pending() == 200
        assert publisher.flush(30) == 0, publisher.last_error
    per_provider: dict[bytes, list[str]] = defaultdict(list)
    for key, value in consume(kafka_config, topic, 200):
        per_provider[key].append(codec.decode(value).data["event_id"])
    assert sorted(e for ids in per_provider.values() for e in ids) == sorted(accepted)
    assert [e for p in (b"p0", b"p1", b"p2") for e in per_provider[p]] == [
        e for p in range(3) for e in accepted[p::3]]


@pytest.mark.slow
def test_cli_publishes_provider_facts_and_a_file(
        kafka_config: dict[str, Any], topic: str, home: Path, tmp_path: Path,
        monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setenv("HWLEDGER_HOME", str(home))
    monkeypatch.setenv("HWLEDGER_KAFKA_BOOTSTRAP", kafka_config["bootstrap.servers"])
    monkeypatch.setenv("HWLEDGER_TOPIC", topic)
    monkeypatch.setenv("HWLEDGER_PROVIDER_ID", "provider-cli")
    assert main(["provider", "register", "--host-uri", "https://p.example:8443",
                 "--attr", "region=us-west", "--attr", "tier=community"]) == 0
    assert main(["provider", "audit", "--auditor", "akash1audit", "--attr", "tier=gold"]) == 0
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"type": "ProviderRegistered", "data": {
        "provider_id": "provider-file", "host_uri": "https://f.example",
        "attributes": [], "occurred_at": "2026-11-01T12:00:00Z"}}) + "\n")
    assert main(["publish", "--events", str(events)]) == 0
    assert main(["spool", "status"]) == 0
    assert "pending    0 event(s)" in capsys.readouterr().out
    decoded = [codec.decode(v) for _, v in consume(kafka_config, topic, 3)]
    assert sorted((e.type, e.data["provider_id"]) for e in decoded) == [
        ("ProviderAudited", "provider-cli"), ("ProviderRegistered", "provider-cli"),
        ("ProviderRegistered", "provider-file")]
    registered = next(e for e in decoded if e.data["provider_id"] == "provider-cli"
                      and e.type == "ProviderRegistered")
    assert registered.data["attributes"] == [{"key": "region", "value": "us-west"},
                                             {"key": "tier", "value": "community"}]


@pytest.mark.slow
def test_cli_leaves_undelivered_events_spooled_and_spool_flush_sends_them(
        kafka_config: dict[str, Any], topic: str, home: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("HWLEDGER_HOME", str(home))
    monkeypatch.setenv("HWLEDGER_TOPIC", topic)
    monkeypatch.setenv("HWLEDGER_PROVIDER_ID", "provider-late")
    monkeypatch.setenv("HWLEDGER_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    assert main(["publish", "snapshot", "--timeout", "0.5"]) == 3
    monkeypatch.setenv("HWLEDGER_KAFKA_BOOTSTRAP", kafka_config["bootstrap.servers"])
    assert main(["spool", "flush", "--timeout", "20"]) == 0
    [(key, value)] = consume(kafka_config, topic, 1)
    assert key == b"provider-late" and codec.decode(value).type == "HardwareSnapshotted"


def test_a_rejected_kafka_property_is_a_configuration_error_and_spools_nothing(
        home: Path, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setenv("HWLEDGER_HOME", str(home))
    monkeypatch.setenv("HWLEDGER_PROVIDER_ID", "provider-misconfigured")
    monkeypatch.setenv("HWLEDGER_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("HWLEDGER_KAFKA_OPT_LOG_LEVEL", "7")  # log.level: no such property
    assert main(["provider", "register", "--host-uri", "https://p.example:8443",
                 "--timeout", "0.5"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "Kafka client configuration rejected" in line and '"log.level"' in line
    assert main(["spool", "status"]) == 0
    assert "pending    0 event(s)" in capsys.readouterr().out


@pytest.mark.slow
def test_an_escaped_underscore_reaches_librdkafka_as_is(
        kafka_config: dict[str, Any], topic: str, home: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("HWLEDGER_HOME", str(home))
    monkeypatch.setenv("HWLEDGER_TOPIC", topic)
    monkeypatch.setenv("HWLEDGER_PROVIDER_ID", "provider-escaped")
    monkeypatch.setenv("HWLEDGER_KAFKA_BOOTSTRAP", kafka_config["bootstrap.servers"])
    monkeypatch.setenv("HWLEDGER_KAFKA_OPT_LOG__LEVEL", "3")
    assert main(["publish", "snapshot", "--timeout", "20"]) == 0
    [(key, _)] = consume(kafka_config, topic, 1)
    assert key == b"provider-escaped"
