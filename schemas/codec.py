"""Avro single-object encoding of hwledger events.

Wire format: marker `C3 01`, the writer schema's 8-byte little-endian CRC-64-AVRO fingerprint,
then the Avro binary body. Decoding resolves the writer schema by fingerprint and reads with the
newest (reader) schema of the same event; when the writer is the newest, no resolution is
needed and fastavro reads it directly. Any bytes that cannot be decoded raise `DecodeError` with
a reason; callers dead-letter them instead of crashing.

Content cache: a node's repeated snapshots carry the same hardware, so for the event types
in CONTENT_CACHED the codec reads the envelope fields (`registry.split`) and decodes the bytes
after them once per distinct content; later events with the same bytes share the decoded
content (and carry it as `Datum.content`, the key of the projection's own memo). Decoded data
is therefore read-only. A `Datum` is the event as Avro reads it (type name and fields);
`schemas/events.py` makes the typed event of it.

Binary UUIDs: a `fixed(16)` field with `logicalType: uuid` (NodeHeartbeated's ids, 16 bytes
instead of 36 characters) is written from and read as the UUID's canonical string, like every
other id in the system. fastavro does not map that logical type itself; `_fixed_uuid` and
`_uuid_fixed` are registered with its logical type tables when this module is imported.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import LOGICAL_READERS
from fastavro.validation import ValidationError, validate
from fastavro.write import LOGICAL_WRITERS

from hwledger.schemas.cache import BoundedCache
from hwledger.schemas.registry import SchemaVersion, Split, by_fingerprint, latest, splits

MARKER = b"\xc3\x01"
HEADER_LEN = len(MARKER) + 8
CONTENT_CACHED = frozenset({"HardwareSnapshotted"})
CONTENT_CACHE_SIZE = 4096
_contents: BoundedCache[bytes, dict[str, Any]] = BoundedCache(CONTENT_CACHE_SIZE)


def _fixed_uuid(datum: Any, *_: Any) -> Any:
    """A UUID (object or string) as its 16 bytes; anything else unchanged, for fastavro to
    refuse as not a fixed(16)."""
    if isinstance(datum, uuid.UUID):
        return datum.bytes
    try:
        return uuid.UUID(datum).bytes if isinstance(datum, str) else datum
    except ValueError:
        return datum


def _uuid_fixed(datum: bytes, *_: Any) -> str:
    return str(uuid.UUID(bytes=datum))


LOGICAL_WRITERS["fixed-uuid"] = _fixed_uuid
LOGICAL_READERS["fixed-uuid"] = _uuid_fixed


class DecodeError(ValueError):
    """Bytes that are not a decodable hwledger event; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EncodeError(ValueError):
    """An event payload that does not fit its Avro schema."""


@dataclass(frozen=True)
class Datum:
    """A decoded event as Avro reads it: its type name and its fields as read with the reader
    schema (`events.typed` makes the typed event of it).

    `content`, for events decoded through the content cache: the writer fingerprint plus the
    encoded fields after the envelope, equal for events that differ only in their envelope.
    """

    type: str
    data: dict[str, Any]
    content: bytes | None = None


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


def decode(raw: bytes) -> Datum:
    """Decode one single-object-encoded event; raise DecodeError with a reason otherwise."""
    if len(raw) < HEADER_LEN:
        raise DecodeError(f"truncated: {len(raw)} bytes is shorter than the 10-byte header")
    if raw[:2] != MARKER:
        raise DecodeError(f"not Avro single-object encoding: starts with {raw[:2].hex()}")
    writer = by_fingerprint().get(raw[2:HEADER_LEN])
    if writer is None:
        raise DecodeError(f"unknown schema fingerprint {raw[2:HEADER_LEN].hex()}")
    parts = splits()[writer.fingerprint] if writer.event_type in CONTENT_CACHED else None
    body = io.BytesIO(raw)
    body.seek(HEADER_LEN)
    if parts is not None:
        return _decode_split(raw, body, writer, parts)
    reader = latest(writer.event_type)
    data = _read(body, writer, writer.parsed, None if reader is writer else reader.parsed)
    _check_end(raw, body, writer)
    return Datum(writer.event_type, data)


def _decode_split(raw: bytes, body: io.BytesIO, writer: SchemaVersion, parts: Split) -> Datum:
    """The envelope from `raw`, the content from the cache (decoded and kept on a miss)."""
    head = _read(body, writer, parts.head_writer, parts.head_reader)
    content = writer.fingerprint + raw[body.tell():]
    cached = _contents.get(content)
    if cached is None:
        cached = _read(body, writer, parts.content_writer, parts.content_reader)
        _check_end(raw, body, writer)
        _contents.put(content, cached)
    return Datum(writer.event_type, {**head, **cached}, content)


def _read(body: io.BytesIO, writer: SchemaVersion, schema: Any, reader: Any) -> dict[str, Any]:
    try:
        data = schemaless_reader(body, schema, reader)
    except (EOFError, ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError,
            OverflowError) as exc:  # OverflowError: a timestamp outside datetime's range
        raise DecodeError(f"corrupt {writer.event_type} body: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict):
        raise DecodeError(f"{writer.event_type} body is not a record")
    return data


def _check_end(raw: bytes, body: io.BytesIO, writer: SchemaVersion) -> None:
    if body.tell() != len(raw):
        raise DecodeError(f"trailing bytes after a {writer.event_type} body")
