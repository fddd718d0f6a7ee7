"""Avro single-object encoding of hwledger events.

Wire format: marker `C3 01`, the writer schema's 8-byte little-endian CRC-64-AVRO fingerprint,
then the Avro binary body. Decoding resolves the writer schema by fingerprint and reads with the
newest (reader) schema of the same event; when the writer is the newest, no resolution is
needed and fastavro reads it directly. Any bytes that cannot be decoded raise `DecodeError` with
a reason; callers dead-letter them instead of crashing.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError, validate

from hwledger.schemas.registry import by_fingerprint, latest

MARKER = b"\xc3\x01"
HEADER_LEN = len(MARKER) + 8


class DecodeError(ValueError):
    """Bytes that are not a decodable hwledger event; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EncodeError(ValueError):
    """An event payload that does not fit its Avro schema."""


@dataclass(frozen=True)
class Event:
    """A decoded event: its type name and its fields as read with the reader schema."""

    type: str
    data: dict[str, Any]


def encode(event_type: str, data: Mapping[str, Any]) -> bytes:
    """Encode `data` as the newest version of `event_type` in single-object encoding."""
    schema = latest(event_type)
    buf = io.BytesIO()
    buf.write(MARKER)
    buf.write(schema.fingerprint)
    try:
        schemaless_writer(buf, schema.parsed, dict(data))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise EncodeError(f"{event_type}: {describe_invalid(event_type, data) or exc}") from exc
    return buf.getvalue()


def describe_invalid(event_type: str, data: Mapping[str, Any]) -> str | None:
    """Why `data` does not match the event's schema, or None when it does."""
    try:
        validate(dict(data), latest(event_type).parsed, raise_errors=True)
    except ValidationError as exc:
        return "; ".join(str(e) for e in exc.errors)
    return None


def decode(raw: bytes) -> Event:
    """Decode one single-object-encoded event; raise DecodeError with a reason otherwise."""
    if len(raw) < HEADER_LEN:
        raise DecodeError(f"truncated: {len(raw)} bytes is shorter than the 10-byte header")
    if raw[:2] != MARKER:
        raise DecodeError(f"not Avro single-object encoding: starts with {raw[:2].hex()}")
    writer = by_fingerprint().get(raw[2:HEADER_LEN])
    if writer is None:
        raise DecodeError(f"unknown schema fingerprint {raw[2:HEADER_LEN].hex()}")
    reader = latest(writer.event_type)
    body = io.BytesIO(raw)
    body.seek(HEADER_LEN)
    try:
        data = schemaless_reader(body, writer.parsed,
                                 None if reader is writer else reader.parsed)
    except (EOFError, ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError) as exc:
        raise DecodeError(f"corrupt {writer.event_type} body: {type(exc).__name__}: {exc}") from exc
    if body.tell() != len(raw):
        raise DecodeError(f"trailing bytes after a {writer.event_type} body")
    if not isinstance(data, dict):
        raise DecodeError(f"{writer.event_type} body is not a record")
    return Event(writer.event_type, data)
