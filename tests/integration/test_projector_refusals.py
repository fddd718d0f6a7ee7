"""No single record stops the pipeline: values PostgreSQL or Python would refuse are dead letters,
a record the database refuses anyway is isolated, and a poisoned log rebuilds the same.

Every test goes through the real broker and PostgreSQL; the projector must return (never raise)
and every valid event after a bad one must be applied.
"""

from __future__ import annotations

import os
import random
from typing import Any

import psycopg
import pytest

from hwledger.deploy.bench.fleet import history
from hwledger.projectors import catch_up
from hwledger.projectors.rebuild import rebuild
from hwledger.schemas.db import connect
from hwledger.schemas.migrations import migrate
from hwledger.seeds.seeding import seed_database
from tests import factories as f
from tests.integration.projector_support import checksums, encoded, project_all, publish
from tests.poison import listed_cases, mutation

FUZZ_COUNT = int(os.environ.get("HWLEDGER_FUZZ_COUNT", "300"))


def _letters(db: psycopg.Connection[Any]) -> dict[bytes, str]:
    rows = db.execute("SELECT raw, reason FROM dead_letters")
    return {bytes(raw): reason for raw, reason in rows}


def _applied(db: psycopg.Connection[Any]) -> set[str]:
    return {r[0] for r in db.execute("SELECT event_id::text FROM applied_events")}


@pytest.mark.slow
def test_each_listed_poison_is_a_dead_letter_and_the_partition_moves_on(
        database_url: str, db_schema: str, db: psycopg.Connection[Any], topic: str,
        kafka_config: dict[str, Any]) -> None:
    provider = "prov-poison"
    cases = listed_cases(provider)
    after = [f.snapshot(provider, f"node-after-{i}", seed=f"after-{i}", minutes=i)
             for i in range(len(cases))]
    messages: list[tuple[str, bytes]] = []
    for (_, raw), valid in zip(cases, after, strict=True):
        messages += [(provider, raw), *encoded([("HardwareSnapshotted", valid)])]
    publish(kafka_config, topic, messages)
    project_all(database_url, db_schema, topic, kafka_config)

    assert _applied(db) == {str(d["event_id"]) for d in after}
    letters = _letters(db)
    missing = [name for name, raw in cases if raw not in letters]
    assert not missing, f"not dead-lettered: {missing}"
    assert all(letters.values())
    seen = db.execute("SELECT max(last_seen_at) FROM provider_inventory").fetchone()
    assert seen is not None and seen[0] == max(d["occurred_at"] for d in after)


@pytest.mark.slow
def test_a_record_the_database_refuses_is_isolated_and_the_rest_of_its_batch_commits(
        database_url: str, db_schema: str, db: psycopg.Connection[Any], topic: str,
        kafka_config: dict[str, Any]) -> None:
    """A rule only PostgreSQL knows (a CHECK constraint here) refuses one record of a batch."""
    db.execute("ALTER TABLE hardware_snapshots ADD CONSTRAINT no_refused_node "
               "CHECK (node_id <> 'refused-node')")
    db.commit()
    events = [("HardwareSnapshotted", f.snapshot(f"prov-{i % 5}", "refused-node" if i == 37
                                                 else f"node-{i}", seed=f"s-{i}", minutes=i))
              for i in range(80)]
    publish(kafka_config, topic, encoded(events))
    project_all(database_url, db_schema, topic, kafka_config)

    refused = events[37][1]
    assert _applied(db) == {str(d["event_id"]) for _, d in events} - {refused["event_id"]}
    (letter,) = db.execute("SELECT event_id, event_type, reason FROM dead_letters").fetchall()
    assert letter[0] == refused["event_id"] and letter[1] == "HardwareSnapshotted"
    assert "refused by PostgreSQL (SQLSTATE 23514)" in letter[2]
    assert "no_refused_node" in letter[2]
    row = db.execute("SELECT sum(next_offset) FROM projection_offsets").fetchone()
    assert row is not None and row[0] == len(events)


@pytest.mark.slow
def test_fuzz_random_bytes_and_bad_mutations_among_valid_events(
        database_url: str, db_schema: str, db: psycopg.Connection[Any], topic: str,
        kafka_config: dict[str, Any]) -> None:
    """HWLEDGER_FUZZ_COUNT bad records (300 in CI) interleaved with a valid history."""
    seed = int(os.environ.get("HWLEDGER_FUZZ_SEED", "12"))
    rng = random.Random(seed)
    valid = list(history(4, 10, 600))
    bad = [mutation(rng, valid) for _ in range(FUZZ_COUNT)]
    messages = encoded(valid)
    for raw in bad:
        messages.insert(rng.randint(0, len(messages)), (f"p{rng.randrange(9)}", raw))
    publish(kafka_config, topic, messages)
    project_all(database_url, db_schema, topic, kafka_config)

    assert _applied(db) == {str(d["event_id"]) for _, d in valid}, f"seed {seed}"
    letters = db.execute("SELECT raw FROM dead_letters").fetchall()
    assert sorted(bytes(r[0]) for r in letters) == sorted(bad), f"seed {seed}"


@pytest.mark.slow
def test_a_poisoned_log_rebuilds_equal_to_the_live_schema_with_the_same_dead_letters(
        own_database: str, kafka_config: dict[str, Any], topic: str) -> None:
    rng = random.Random(5)
    valid = list(history(3, 8, 300))
    messages = encoded(valid)
    for _, raw in listed_cases("p1"):
        messages.insert(rng.randint(0, len(messages)), ("p1", raw))
    publish(kafka_config, topic, messages)
    with connect(own_database, None) as conn:
        migrate(conn, "hwledger")
    with connect(own_database, "hwledger") as conn:
        seed_database(conn)
        conn.commit()
    catch_up(own_database, "hwledger", kafka_config, topic)
    result = rebuild(own_database, topic, kafka_config, switch=False)

    assert result.events == len(messages)
    assert checksums(own_database, result.schema) == checksums(own_database, "hwledger")
    letters = "SELECT partition, \"offset\", raw, reason FROM dead_letters ORDER BY 1, 2"
    with connect(own_database, "hwledger") as live, connect(own_database, result.schema) as new:
        assert live.execute(letters).fetchall() == new.execute(letters).fetchall()
        count = live.execute("SELECT count(*) FROM dead_letters").fetchone()
    assert count is not None and count[0] == len(listed_cases("p1"))
