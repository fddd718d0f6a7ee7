"""Apache Kafka's single KRaft broker: its log survives a graceful stop and a SIGKILL."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from hwledger.deploy.kafka_admin import ensure_topic
from hwledger.deploy.kafka_broker import ApacheKafkaBroker
from hwledger.deploy.local_processes import free_port, stop_pid

pytestmark = pytest.mark.apache_kafka


def _count(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "count"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return int(high - low)
    finally:
        consumer.close()


def test_events_survive_a_graceful_stop_and_a_sigkill(tmp_path: Path) -> None:
    broker = ApacheKafkaBroker(tmp_path / "kafka")
    port, controller = free_port(), free_port()
    bootstrap = f"127.0.0.1:{port}"
    pid = broker.start(port, controller)
    ensure_topic({"bootstrap.servers": bootstrap}, "durable", 1)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(100):
        producer.produce("durable", str(i).encode())
    assert producer.flush(30) == 0
    stop_pid(pid, timeout=30)

    pid = broker.start(port, controller)
    assert _count(bootstrap, "durable") == 100
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)

    pid = broker.start(port, controller)
    try:
        assert _count(bootstrap, "durable") == 100
    finally:
        stop_pid(pid, timeout=30)
