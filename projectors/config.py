"""What one projector is told: `ProjectorConfig` (database, schema, topic, Kafka settings,
batching, retries, when to exit) and the confluent-kafka consumer settings it implies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hwledger.projectors.health import DEFAULT_STALL_SECONDS
from hwledger.schemas.signatures import AuditorKeys


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
