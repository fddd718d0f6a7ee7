"""Faults only a real, durable broker can host: Apache Kafka (HWLEDGER_TEST_BROKER=kafka).

Events flow through the real publisher (with its spool) and the real projector while brokers
are killed and restarted or projectors come and go; afterwards the live tables are compared
with a clean replay of the log into a scratch schema (what `hwledger verify` does), and the
events lost (accepted but absent from the tables) and applied twice (rows the clean replay
does not have) are printed and must both be zero.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from hwledger.deploy.cli import main
from hwledger.deploy.kafka_dist import classpath
from hwledger.projectors.synthetic import history
from tests.integration.projector_support import encoded, project_all

pytestmark = pytest.mark.skipif(
    os.environ.get("HWLEDGER_TEST_BROKER") != "kafka",
    reason="needs Apache Kafka (the lane HWLEDGER_TEST_BROKER=kafka of .ci/run): Tansu keeps "
           "its log in memory, so it survives no broker restart and has no replication")

REPO = Path(__file__).resolve().parents[2]


def watermarks(kafka: dict[str, Any], topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    """(low, high) per partition, as the broker reports them."""
    consumer = Consumer({**kafka, "group.id": f"w-{uuid.uuid4().hex[:8]}"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in range(partitions)}
    finally:
        consumer.close()


def test_status_lag_per_partition_equals_the_broker_watermarks(
        database_url: str, db_schema: str, kafka_config: dict[str, Any], topic: str,
        home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    messages = encoded(history(14, 12, 900))
    projected, later = messages[:600], messages[600:]
    producer = Producer({**kafka_config, "enable.idempotence": True})
    for key, value in projected:
        producer.produce(topic, value, key=key)
    assert producer.flush(30) == 0
    project_all(database_url, db_schema, topic, kafka_config, idle=60)  # caught up: stops
    behind: dict[int, int] = {0: 0, 1: 0, 2: 0}

    def count(error: Any, message: Any) -> None:
        assert error is None
        behind[message.partition()] += 1
    for key, value in later:
        producer.produce(topic, value, key=key, on_delivery=count)
    assert producer.flush(30) == 0
    assert min(behind.values()) > 0  # every partition is behind by its own count

    for name, value in {"HWLEDGER_HOME": str(home), "HWLEDGER_DATABASE_URL": database_url,
                        "HWLEDGER_KAFKA_BOOTSTRAP": kafka_config["bootstrap.servers"],
                        "HWLEDGER_TOPIC": topic, "HWLEDGER_DB_SCHEMA": db_schema,
                        "COLUMNS": "200"}.items():
        monkeypatch.setenv(name, value)
    main(["status"])
    out = capsys.readouterr().out
    shown = {int(p): (int(lag), int(high)) for p, lag, high in re.findall(
        r"partition (\d+)\W+ok\W+lag (\d+) \(next offset \d+, high watermark (\d+)\)", out)}
    broker = watermarks(kafka_config, topic, 3)
    print(f"status lag per partition {shown}, broker watermarks {broker}")
    assert shown == {p: (behind[p], broker[p][1]) for p in range(3)}, out
    assert f"{len(later)} events behind" in out


def compose_topic_command() -> list[str]:
    """The arguments of deploy/compose.yaml's one-shot `topic` service (kafka-topics.sh)."""
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text("utf-8"))
    service = compose["services"]["topic"]
    assert service["entrypoint"] == ["/opt/kafka/bin/kafka-topics.sh"]
    return [str(arg) for arg in service["command"]]


def test_the_compose_topic_command_creates_the_topic_it_describes(
        kafka_config: dict[str, Any]) -> None:
    args = compose_topic_command()
    name = f"hwledger.compose.{uuid.uuid4().hex[:8]}"
    args[args.index("--bootstrap-server") + 1] = kafka_config["bootstrap.servers"]
    wanted_partitions = int(args[args.index("--partitions") + 1])
    wanted_config = dict(arg.split("=", 1) for i, arg in enumerate(args)
                         if i > 0 and args[i - 1] == "--config")
    args[args.index("--topic") + 1] = name
    for _ in range(2):  # --if-not-exists: a second run changes nothing and succeeds
        done = subprocess.run(
            ["java", "-Xmx256m", "-cp", classpath(), "org.apache.kafka.tools.TopicCommand",
             *args], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    admin = AdminClient({**kafka_config, "log_level": 0})
    metadata = admin.list_topics(name, timeout=10).topics[name]
    assert len(metadata.partitions) == wanted_partitions
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    described = admin.describe_configs([resource])[resource].result(15)
    read_back = {key: described[key].value for key in wanted_config}
    print(f"topic {name}: {wanted_partitions} partitions, config read back {read_back}")
    assert wanted_config == {"retention.ms": "-1"} and read_back == wanted_config
    assert not described["retention.ms"].is_default
