"""Typed events: one type per Avro event schema, with exactly the newest schema's fields."""

from __future__ import annotations

import pytest

from hwledger.schemas import codec
from hwledger.schemas.events import AVRO_FIELDS, EVENT_CLASSES, HardwareSnapshotted, typed
from hwledger.schemas.registry import EVENT_TYPES, latest
from tests import factories as f
from tests.unit.test_codec import sample_events


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_each_event_type_has_the_fields_of_its_newest_schema(event_type: str) -> None:
    assert EVENT_CLASSES[event_type].event_type == event_type
    assert sorted(AVRO_FIELDS[event_type]) == sorted(
        field["name"] for field in latest(event_type).raw["fields"])


@pytest.mark.parametrize(("event_type", "data"), sample_events())
def test_a_decoded_event_is_typed_once_and_gives_its_fields_back(
        event_type: str, data: dict[str, object]) -> None:
    datum = codec.decode(codec.encode(event_type, data))
    event = typed(datum)
    assert type(event) is EVENT_CLASSES[event_type]
    assert event.fields() == datum.data


def test_a_cached_snapshot_carries_its_content_key_outside_its_fields() -> None:
    datum = codec.decode(codec.encode("HardwareSnapshotted", f.snapshot()))
    event = typed(datum)
    assert isinstance(event, HardwareSnapshotted)
    assert event.content == datum.content is not None
    assert "content" not in event.fields()
