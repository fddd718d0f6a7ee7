"""The pure rules of a rebuild: schema naming and when the new schema has caught up."""

from __future__ import annotations

from hwledger.projectors.rebuild import next_schema, reached


def test_next_schema_counts_past_the_highest_version() -> None:
    assert next_schema([]) == "hwledger_v1"
    assert next_schema(["hwledger", "hwledger_v1", "hwledger_v7", "public"]) == "hwledger_v8"
    assert next_schema(["hwledger_vx", "hwledger_v2_old"]) == "hwledger_v1"


def test_reached_needs_every_live_partition() -> None:
    assert reached({0: 10, 1: 5}, {0: 10, 1: 4})
    assert reached({0: 3}, {})
    assert not reached({0: 10, 1: 3}, {0: 10, 1: 4})
    assert not reached({0: 10}, {0: 10, 2: 1})
