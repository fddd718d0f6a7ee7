"""Broker checks and topic creation, with one-line errors naming the setting and address."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic  # type: ignore[attr-defined]

from hwledger.schemas.errors import UserError


def _admin(config: Mapping[str, Any]) -> AdminClient:
    conf = {k: v for k, v in config.items() if v is not None}
    conf.setdefault("log_level", 0)
    return AdminClient(conf)


def check_broker(config: Mapping[str, Any], timeout: float = 5.0) -> ClusterMetadata:
    """Cluster metadata, or UserError when nothing Kafka-speaking answers in time."""
    address = config.get("bootstrap.servers")
    try:
        return _admin(config).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise UserError(
            f"no Kafka broker answered at {address} (HWLEDGER_KAFKA_BOOTSTRAP) within "
            f"{timeout:g}s: {exc.args[0].str() if exc.args else exc}; is it running and is it "
            "a Kafka broker?"
        ) from exc


def ensure_topic(config: Mapping[str, Any], topic: str, partitions: int,
                 timeout: float = 10.0, replicas: int = 1) -> int:
    """Create `topic` (retention.ms=-1, `replicas` copies of each partition) unless it
    exists; returns its partition count."""
    metadata = check_broker(config, timeout)
    existing = metadata.topics.get(topic)
    if existing is not None and existing.error is None:
        return len(existing.partitions)
    admin = _admin(config)
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=replicas,
                  config={"retention.ms": "-1"})],
        operation_timeout=timeout,
    )
    try:
        futures[topic].result(timeout)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise UserError(f"cannot create topic {topic!r}: {exc}") from exc
    return partitions
