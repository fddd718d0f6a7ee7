"""The synthetic histories the projector's tests and benchmark are built on."""

from __future__ import annotations

from collections import Counter

from hwledger.deploy.bench.fleet import history
from hwledger.schemas import codec, validation


def test_history_is_deterministic_valid_and_in_per_provider_time_order() -> None:
    events = list(history(3, 5, 400))
    assert events == list(history(3, 5, 400)) and len(events) == 400
    assert set(Counter(kind for kind, _ in events)) >= {
        "ProviderRegistered", "HardwareSnapshotted", "RunStarted", "RunFinished"}
    last: dict[str, object] = {}
    for kind, data in events:
        assert validation.problems(kind, data) == []
        assert codec.decode(codec.encode(kind, data)).data["event_id"] == data["event_id"]
        previous = last.get(data["provider_id"])
        assert previous is None or previous < data["occurred_at"]
        last[data["provider_id"]] = data["occurred_at"]
    assert all(1 <= len(d["gpus"]) <= 8 for k, d in events if k == "HardwareSnapshotted")
