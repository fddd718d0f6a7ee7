"""Turning event payloads into publishable records: defaults, checks, encoding.

Pure helpers shared by the publisher, the events-file reader and the runner library. An event
payload is completed with the fields a producer owns (`event_id`, `occurred_at`, `producer`),
checked against its Avro schema and the impossible-value rules, and encoded once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from hwledger.schemas import codec, validation
from hwledger.schemas.errors import UserError
from hwledger.schemas.registry import EVENT_TYPES

PRODUCER_NAME = "hwledger"


class ProducerSettings(Protocol):
    """What producers read from the configuration (`hwledger.deploy.config.Settings` fits);
    a protocol so this package does not depend on the composition root."""

    @property
    def topic(self) -> str: ...

    @property
    def home(self) -> Path: ...

    @property
    def provider_id(self) -> str | None: ...

    @property
    def node_id(self) -> str | None: ...

    @property
    def gpu_sample_hz(self) -> float: ...

    def kafka_config(self, **overrides: Any) -> dict[str, Any]: ...


class InvalidEventError(UserError):
    """An event payload that does not fit its schema or holds impossible values."""


@dataclass(frozen=True)
class EncodedEvent:
    """One event ready for the spool: Kafka key (provider id) and Avro single-object bytes."""

    event_type: str
    event_id: str
    provider_id: str
    value: bytes


@cache
def hwledger_version() -> str:
    try:
        return metadata.version("hwledger")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def producer_info() -> dict[str, str]:
    """The `producer` record every event carries."""
    return {"name": PRODUCER_NAME, "version": hwledger_version()}


def now() -> datetime:
    """Event time at millisecond precision (what timestamp-millis keeps)."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def complete(data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` with a fresh event_id, the current time and this producer where absent."""
    defaults = {"event_id": str(uuid.uuid4()), "occurred_at": now(),
                "producer": producer_info()}
    return {**defaults, **data}


def check(event_type: str, data: Mapping[str, Any]) -> list[str]:
    """Why `data` cannot be published as `event_type`; empty when it can."""
    if event_type not in EVENT_TYPES:
        return [f"unknown event type {event_type!r} (known: {', '.join(EVENT_TYPES)})"]
    invalid = codec.describe_invalid(event_type, data)
    if invalid is not None:
        return [invalid]
    return validation.problems(event_type, data)


def encode_event(event_type: str, data: Mapping[str, Any]) -> EncodedEvent:
    """Encode one complete payload and check it for impossible values; InvalidEventError says
    what is wrong. Encoding first is the fast schema check: it fails on any mismatch."""
    if event_type not in EVENT_TYPES:
        raise InvalidEventError(check(event_type, data)[0])
    try:
        value = codec.encode(event_type, data)
    except codec.EncodeError as exc:
        raise InvalidEventError(str(exc)) from None
    found = validation.problems(event_type, data)
    if found:
        raise InvalidEventError(f"{event_type}: {'; '.join(found)}")
    return EncodedEvent(event_type, str(data["event_id"]), str(data["provider_id"]), value)
