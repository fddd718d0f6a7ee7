"""`hwledger publish --events FILE.jsonl`: read and check a whole file of events first.

Each non-blank line is `{"type": "<EventName>", "data": {...fields as in the Avro schema...}}`.
`occurred_at` is ISO-8601 with a timezone or epoch milliseconds. `producer` defaults to this
hwledger; a missing `event_id` is derived from the line's content, so publishing the same file
twice gives the same ids (deduplicated downstream). Every problem is reported with its line
number; the caller publishes nothing unless the list of errors is empty.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hwledger.producers.events import EncodedEvent, check, encode_event, producer_info
from hwledger.schemas.registry import EVENT_TYPES

LINE_NAMESPACE = uuid.UUID("6f2d3c1e-3b0a-5f1e-9a59-0c6b5f2e7a11")


@dataclass(frozen=True)
class LineError:
    """One problem in an events file."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def parse_time(value: Any) -> datetime:
    """ISO-8601 with a timezone, or epoch milliseconds, as an aware datetime."""
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"occurred_at {value!r} is not ISO-8601") from None
        if parsed.tzinfo is None:
            raise ValueError(f"occurred_at {value!r} has no timezone (add Z or +00:00)")
        return parsed
    raise ValueError(f"occurred_at must be ISO-8601 text or epoch milliseconds, got {value!r}")


def _payload(doc: Any) -> tuple[str, dict[str, Any]]:
    """The event type and completed data of one parsed line; ValueError says what is wrong."""
    if not isinstance(doc, dict) or set(doc) != {"type", "data"}:
        raise ValueError('a line must be an object with exactly "type" and "data"')
    event_type, data = doc["type"], doc["data"]
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r} (known: {', '.join(EVENT_TYPES)})")
    if not isinstance(data, dict):
        raise ValueError('"data" must be an object')
    completed = dict(data)
    if "occurred_at" not in completed:
        raise ValueError("missing field occurred_at")
    completed["occurred_at"] = parse_time(completed["occurred_at"])
    completed.setdefault("producer", producer_info())
    completed.setdefault("event_id", str(uuid.uuid5(
        LINE_NAMESPACE, json.dumps(doc, sort_keys=True, separators=(",", ":")))))
    return event_type, completed


def _line(number: int, raw: bytes) -> EncodedEvent | LineError:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LineError(number, f"not UTF-8: byte 0x{raw[exc.start]:02x} at column "
                                 f"{exc.start + 1}")
    try:
        event_type, data = _payload(json.loads(text))
    except json.JSONDecodeError as exc:
        return LineError(number, f"malformed JSON: {exc.msg} at column {exc.colno}")
    except ValueError as exc:
        return LineError(number, str(exc))
    found = check(event_type, data)
    if found:
        return LineError(number, "; ".join(found))
    return encode_event(event_type, data)


def read_events(raw: bytes) -> tuple[list[EncodedEvent], list[LineError]]:
    """Every event of a JSON-lines file, and every problem found in it."""
    events: list[EncodedEvent] = []
    errors: list[LineError] = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        result = _line(number, line)
        if isinstance(result, LineError):
            errors.append(result)
        else:
            events.append(result)
    return events, errors
