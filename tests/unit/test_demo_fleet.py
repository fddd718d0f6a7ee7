"""The shipped demo fleet becomes a valid, mixed-vendor event history."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from hwledger.schemas import codec
from hwledger.schemas.validation import problems
from hwledger.seeds.demo import demo_fleet_events

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_demo_fleet_events_are_schema_valid_and_plausible() -> None:
    events = demo_fleet_events(NOW)
    for event_type, data in events:
        assert codec.describe_invalid(event_type, data) is None
        assert problems(event_type, data) == []
        assert data["occurred_at"] <= NOW


def test_demo_fleet_is_a_few_dozen_mixed_vendor_providers() -> None:
    events = demo_fleet_events(NOW)
    counts = Counter(t for t, _ in events)
    assert 24 <= counts["ProviderRegistered"] <= 60
    assert counts["ProviderAudited"] and counts["RunStarted"] and counts["RunFinished"]
    vendors = {g["vendor"] for t, d in events if t == "HardwareSnapshotted" for g in d["gpus"]}
    assert vendors == {"nvidia", "amd"}


def test_same_now_same_ids_later_now_new_history() -> None:
    first = [d["event_id"] for _, d in demo_fleet_events(NOW)]
    assert first == [d["event_id"] for _, d in demo_fleet_events(NOW)]
    later = NOW.replace(hour=13)
    assert not set(first) & {d["event_id"] for _, d in demo_fleet_events(later)}
