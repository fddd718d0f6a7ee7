"""NodeHeartbeated in the pure projection, duplicates found in the tables, retention slices."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from hwledger.deploy.bench.heartbeat_day import DayConfig, period_events
from hwledger.deploy.bench.soak import NodeLoad, SoakResult, figures, per_node_day, record_bytes
from hwledger.producers.agent import SNAPSHOT_EVERY, heartbeat_publishes_snapshot
from hwledger.producers.runner import heartbeat_of
from hwledger.projectors.batch import references
from hwledger.projectors.plan import KnownRun, KnownSnapshot, State
from hwledger.projectors.retention import horizon, prune_slices
from hwledger.schemas import codec
from tests import factories as f
from tests.projecting import batch, run


def known(snapshot: dict[str, Any]) -> State:
    """A state in which `snapshot` is stored."""
    return State(snapshots={snapshot["event_id"]: KnownSnapshot(
        snapshot["provider_id"], snapshot["node_id"], frozenset(range(8)), "sys", "sw")})


def test_a_heartbeat_moves_only_liveness_and_is_not_an_applied_row() -> None:
    s = f.snapshot()
    plan, _ = run(("NodeHeartbeated", f.heartbeat(s, minutes=5)),
                  ("NodeHeartbeated", f.heartbeat(s, minutes=3)), state=known(s))
    assert plan.node_seen == {("provider-a", "node-1"): f.at(5)}
    assert plan.last_seen == {"provider-a": f.at(5)}
    assert plan.touched == set() and plan.applied == [] and plan.snapshots == []
    assert plan.nodes == {} and plan.projected["NodeHeartbeated"] == 2


def test_a_heartbeat_after_its_snapshot_in_the_same_batch_applies() -> None:
    s = f.snapshot(minutes=0)
    plan, _ = run(("HardwareSnapshotted", s), ("NodeHeartbeated", f.heartbeat(s, minutes=5)))
    assert plan.node_seen == {("provider-a", "node-1"): f.at(5)}
    assert plan.touched == {"provider-a"} and plan.last_seen == {"provider-a": f.at(5)}
    assert [row.event_type for row in plan.applied] == ["HardwareSnapshotted"]
    assert plan.applied[0].occurred_at == f.at(0)


def test_a_heartbeat_before_its_snapshot_is_parked_then_applied() -> None:
    s = f.snapshot(minutes=0)
    beat = f.heartbeat(s, minutes=5)
    first, state = run(("NodeHeartbeated", beat))
    (parked,) = first.newly_parked
    assert parked.waiting_for == f"snapshot {s['event_id']}" and first.node_seen == {}
    second, _ = run(("HardwareSnapshotted", s), state=state)
    assert second.node_seen == {("provider-a", "node-1"): f.at(5)}
    assert second.newly_parked == [] and second.dead_letters == []


def test_a_heartbeat_whose_snapshot_never_comes_ages_into_a_dead_letter() -> None:
    s = f.snapshot()
    plan, _ = run(("NodeHeartbeated", f.heartbeat(s, minutes=1)),
                  ("ProviderRegistered", f.provider_registered(minutes=1 + 61)))
    (dead,) = plan.dead_letters
    assert dead.event_type == "NodeHeartbeated"
    assert f"waiting for snapshot {s['event_id']}" in dead.reason


def test_a_heartbeat_naming_another_nodes_snapshot_is_a_dead_letter() -> None:
    s = f.snapshot(node_id="node-1")
    plan, _ = run(("NodeHeartbeated", f.heartbeat(s, node_id="node-2")), state=known(s))
    (dead,) = plan.dead_letters
    assert "heartbeat of provider-a/node-2 references snapshot" in dead.reason
    assert plan.node_seen == {} and plan.last_seen == {}


def test_references_name_heartbeat_snapshots_and_the_batchs_own_snapshots() -> None:
    s, other = f.snapshot(), f.snapshot(node_id="node-2")
    refs = references(batch(("HardwareSnapshotted", other), ("NodeHeartbeated", f.heartbeat(s))))
    assert refs.snapshot_ids == {s["event_id"], other["event_id"]}


def test_a_stored_snapshot_seen_again_is_a_duplicate_without_rows() -> None:
    s = f.snapshot()
    plan, _ = run(("HardwareSnapshotted", s), state=known(s))
    assert plan.duplicates == 1 and plan.snapshots == [] and plan.applied == []
    assert plan.dead_letters == [] and plan.nodes == {}


def test_a_stored_run_start_seen_again_is_a_duplicate_another_one_a_dead_letter() -> None:
    s = f.snapshot()
    started = f.run_started(s, "run-1")
    state = known(s)
    state.runs[("provider-a", "run-1")] = KnownRun("node-1", None, 0, "sys", "sw",
                                                   started["event_id"])
    plan, _ = run(("RunStarted", started), ("RunStarted", f.run_started(s, "run-1")),
                  state=state)
    assert plan.duplicates == 1 and plan.runs == []
    (dead,) = plan.dead_letters
    assert "already started by another event" in dead.reason


def test_the_prune_horizon_is_the_window_before_the_newest_event_or_now() -> None:
    week = timedelta(days=7)
    assert horizon(None, f.at(0), week) is None
    assert horizon(f.at(0), f.at(60), week) == f.at(0) - week
    assert horizon(f.at(600), f.at(60), week) == f.at(60) - week  # a clock running ahead


def test_prune_slices_cover_everything_before_the_horizon_an_hour_at_a_time() -> None:
    hour = timedelta(hours=1)
    assert prune_slices(None, f.at(0)) == [(None, f.at(0))]
    assert prune_slices(f.at(60), f.at(0)) == [(None, f.at(0))]
    slices = prune_slices(f.at(0), f.at(150))
    assert slices == [(None, f.at(0)), (f.at(0), f.at(0) + hour),
                      (f.at(0) + hour, f.at(0) + 2 * hour), (f.at(120), f.at(150))]


def test_every_nth_heartbeat_is_a_full_snapshot() -> None:
    plan = [heartbeat_publishes_snapshot(beats, 3) for beats in range(3)]
    assert plan == [False, False, True]
    assert heartbeat_publishes_snapshot(0, 1)


def test_a_heartbeat_names_its_snapshot_and_encodes_small() -> None:
    s = f.snapshot()
    beat = heartbeat_of(s)
    assert (beat["provider_id"], beat["node_id"], beat["snapshot_event_id"]) == (
        s["provider_id"], s["node_id"], s["event_id"])
    assert beat["event_id"] != s["event_id"]
    small, full = codec.encode("NodeHeartbeated", beat), codec.encode("HardwareSnapshotted", s)
    ids = len(beat["provider_id"]) + len(beat["node_id"])
    # header 10, two 16-byte ids, a timestamp varint of at most 6 bytes, two length-prefixed ids
    assert len(small) <= 10 + 16 + 6 + 2 + ids + 16 < 100 < 800 < len(full)
    assert codec.decode(small).data == beat | {
        "occurred_at": beat["occurred_at"].replace(
            microsecond=beat["occurred_at"].microsecond // 1000 * 1000)}


def test_a_heartbeat_id_that_is_not_a_uuid_is_refused_with_its_field() -> None:
    beat = heartbeat_of(f.snapshot()) | {"snapshot_event_id": "not-a-uuid"}
    with pytest.raises(codec.EncodeError, match="snapshot_event_id is <not-a-uuid>"):
        codec.encode("NodeHeartbeated", beat)


def test_a_kafka_record_is_its_key_value_and_framing() -> None:
    assert record_bytes(b"k", b"v" * 10) == 1 + (3 + 1 + 1 + 1 + 10 + 1)
    assert record_bytes(b"k" * 5, b"v" * 200) == 2 + (3 + 1 + 5 + 2 + 200 + 1)
    assert per_node_day(1000, 10) == 100 * 288 and per_node_day(0, 0) == 0.0


def test_soak_nodes_heartbeat_between_full_snapshots_counted_beside_the_old_load() -> None:
    result = SoakResult(1.0, 1)
    load = NodeLoad([f.snapshot()], result)
    kinds = [load.publication(index, f.at(minute))
             for minute in range(SNAPSHOT_EVERY + 1) for index in (0, 1)]
    assert [k for k, _ in kinds[::2]] == (
        ["HardwareSnapshotted"] + ["NodeHeartbeated"] * (SNAPSHOT_EVERY - 1)
        + ["HardwareSnapshotted"])
    first, beat = kinds[0][1], kinds[2][1]
    assert beat["snapshot_event_id"] == first["event_id"] and beat["provider_id"] == "soak-0"
    assert beat["occurred_at"] == f.at(1)
    assert result.heartbeats == 2 * (SNAPSHOT_EVERY - 1)
    full = record_bytes(b"soak-0", codec.encode("HardwareSnapshotted", first))
    beats = sum(record_bytes(d["provider_id"].encode(), codec.encode(k, d))
                for k, d in kinds if k == "NodeHeartbeated")
    assert result.snapshot_wire_bytes == full * len(kinds)
    assert result.wire_bytes == full * 4 + beats
    result.published = len(kinds)
    found = figures(result)
    assert found["heartbeat_bytes_per_node_day"] == round(
        (full * 4 + beats) / len(kinds) * 288)
    assert found["heartbeat_bytes_ratio"] > 3


def test_the_heartbeat_day_publishes_snapshots_before_and_heartbeats_after() -> None:
    config = DayConfig(sample=2, nodes=2, periods=14, snapshot_every=12)
    templates = [f.snapshot()]
    before = period_events("before", 5, config, templates)
    assert [k for k, _ in before] == ["HardwareSnapshotted"] * 4
    assert len({(d["provider_id"], d["node_id"]) for _, d in before}) == 4
    first = period_events("after", 0, config, templates)
    beats = period_events("after", 5, config, templates)
    again = period_events("after", 12, config, templates)
    assert {k for k, _ in first} == {k for k, _ in again} == {"HardwareSnapshotted"}
    assert [d["snapshot_event_id"] for _, d in beats] == [d["event_id"] for _, d in first]
    later = period_events("after", 13, config, templates)
    assert [d["snapshot_event_id"] for _, d in later] == [d["event_id"] for _, d in again]
    assert beats[0][1]["occurred_at"] == f.T0.replace(day=1, hour=0, minute=25)
