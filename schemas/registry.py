"""Every versioned Avro schema shipped in `schemas/avro/`, parsed once and indexed.

File names are `<EventName>.v<N>.avsc`. The newest version of an event is the writer schema
for new events and the reader schema for decoding; every version stays resolvable by its
CRC-64-AVRO fingerprint so old records in the log remain readable.

`split` cuts a record schema after its leading envelope fields (event id, time, producer,
provider, node: different in every event) so the codec can decode the content after them once
per distinct content (see `codec.decode`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from fastavro import parse_schema
from fastavro.schema import (
    SchemaParseException,
    UnknownType,
    fingerprint,
    to_parsing_canonical_form,
)

EVENT_TYPES = (
    "HardwareSnapshotted",
    "NodeHeartbeated",
    "RunStarted",
    "RunFinished",
    "ProviderRegistered",
    "ProviderAudited",
)

ENVELOPE_FIELDS = frozenset({"event_id", "occurred_at", "producer", "provider_id", "node_id"})
"""Fields that differ between otherwise identical events (a node's repeated snapshots)."""

_FILE_NAME = re.compile(r"^(?P<event>[A-Za-z]+)\.v(?P<version>\d+)\.avsc$")


@dataclass(frozen=True)
class SchemaVersion:
    """One `.avsc` file: the event it describes, its version, and its parsed forms."""

    event_type: str
    version: int
    raw: dict[str, Any]
    parsed: Any
    fingerprint: bytes


def fingerprint_of(raw_schema: dict[str, Any]) -> bytes:
    """CRC-64-AVRO fingerprint of a schema's Parsing Canonical Form, little-endian bytes."""
    canonical = to_parsing_canonical_form(parse_schema(raw_schema, _write_hint=False))
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def load_version(event_type: str, version: int, raw: dict[str, Any]) -> SchemaVersion:
    """Parse one schema document into a SchemaVersion.

    `parsed` keeps fastavro's "already parsed" hint, so each read or write skips re-parsing
    the schema (a third of the decode time of a snapshot without it).
    """
    parsed = parse_schema(raw)
    return SchemaVersion(event_type, version, raw, parsed, fingerprint_of(raw))


@cache
def all_versions() -> tuple[SchemaVersion, ...]:
    """Every shipped schema version, sorted by event type then version."""
    found = []
    for entry in resources.files("hwledger.schemas").joinpath("avro").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        raw = json.loads(entry.read_text(encoding="utf-8"))
        found.append(load_version(match["event"], int(match["version"]), raw))
    return tuple(sorted(found, key=lambda s: (s.event_type, s.version)))


@cache
def by_fingerprint() -> dict[bytes, SchemaVersion]:
    """Writer-schema lookup used by the decoder."""
    return {s.fingerprint: s for s in all_versions()}


@cache
def latest(event_type: str) -> SchemaVersion:
    """The newest version of an event: the writer for new events, the reader for old ones."""
    versions = [s for s in all_versions() if s.event_type == event_type]
    if not versions:
        raise KeyError(f"unknown event type {event_type!r}; known: {', '.join(EVENT_TYPES)}")
    return versions[-1]


@dataclass(frozen=True)
class Split:
    """A writer schema cut after its envelope, with the reader schema cut to match: `head_*`
    read the leading envelope fields, `content_*` the rest (None when no resolution is needed:
    the writer is the reader)."""

    head_writer: Any
    head_reader: Any
    content_writer: Any
    content_reader: Any


def _part(record: dict[str, Any], fields: list[dict[str, Any]]) -> Any:
    """`record` (same name and namespace, so resolution matches) with only `fields`."""
    return parse_schema({**record, "fields": fields})


@cache
def splits() -> dict[bytes, Split | None]:
    """fingerprint -> `split` of every shipped version, computed once."""
    return {s.fingerprint: split(s) for s in all_versions()}


def split(writer: SchemaVersion) -> Split | None:
    """`writer` cut after its leading envelope fields, to be read with the newest version of
    its event; None when it has no such prefix or nothing after it, or a part cannot stand
    alone (a named type of the content defined in the envelope)."""
    reader = latest(writer.event_type)
    fields = writer.raw["fields"]
    cut = 0
    while cut < len(fields) and fields[cut]["name"] in ENVELOPE_FIELDS:
        cut += 1
    if cut == 0 or cut == len(fields):
        return None
    head = {f["name"] for f in fields[:cut]}
    reader_fields = reader.raw["fields"]
    same = reader is writer
    try:
        return Split(
            _part(writer.raw, fields[:cut]),
            None if same else _part(reader.raw, [f for f in reader_fields if f["name"] in head]),
            _part(writer.raw, fields[cut:]),
            None if same else _part(reader.raw,
                                    [f for f in reader_fields if f["name"] not in head]))
    except (SchemaParseException, UnknownType):
        return None
