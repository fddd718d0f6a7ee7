"""Poison: 1,000 bad messages among valid ones; dead letters and the `hwledger dlq` commands."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import psycopg
import pytest

from hwledger.deploy.bench.fleet import history
from hwledger.deploy.cli import main
from hwledger.schemas import codec
from tests import factories as f
from tests.integration.projector_support import encoded, project_all, publish

BAD = 1000


def bad_messages(valid: list[tuple[str, dict[str, Any]]], rng: random.Random
                 ) -> list[tuple[str, dict[str, Any] | None, bytes]]:
    """(provider, event it must follow or None, raw bytes) for each kind of poison."""
    snapshots = [d for t, d in valid if t == "HardwareSnapshotted"]
    finished = [d for t, d in valid if t == "RunFinished"]
    made: list[tuple[str, dict[str, Any] | None, bytes]] = []
    for i in range(BAD):
        kind = i % 8
        snap = rng.choice(snapshots)
        provider = str(snap["provider_id"])
        if kind == 0:
            made.append((provider, None, rng.randbytes(rng.randint(0, 64))))
        elif kind == 1:
            whole = codec.encode("HardwareSnapshotted", snap)
            made.append((provider, None, whole[:rng.randint(11, len(whole) - 1)]))
        elif kind == 2:
            made.append((provider, None, b"\xc3\x01" + rng.randbytes(8) + b"\x02\x04"))
        elif kind == 3:
            made.append((provider, None, json.dumps({"type": "x", "n": i}).encode()))
        elif kind == 4:
            data = snap | {"event_id": str(uuid.uuid4()), "storage": [
                {"class": "beta3", "bytes": -rng.randint(1, 10**12)}]}
            made.append((provider, None, codec.encode("HardwareSnapshotted", data)))
        elif kind == 5:
            data = snap | {"event_id": str(uuid.uuid4()), "gpus": [f.gpu(0), f.gpu(0)]}
            made.append((provider, None, codec.encode("HardwareSnapshotted", data)))
        elif kind == 6:
            run = f.run_started(snap, f"bad-run-{i}", gpu_slots=[len(snap["gpus"]) + 3],
                                seed=f"bad-run-{i}")
            made.append((provider, snap, codec.encode("RunStarted", run)))
        else:
            done = rng.choice(finished)
            other = "failed" if done["status"] == "succeeded" else "succeeded"
            data = done | {"event_id": str(uuid.uuid4()), "status": other}
            made.append((str(done["provider_id"]), done, codec.encode("RunFinished", data)))
    return made


def interleave(valid: list[tuple[str, dict[str, Any]]],
               bad: list[tuple[str, dict[str, Any] | None, bytes]], rng: random.Random
               ) -> list[tuple[str, bytes]]:
    """Valid events in order; each bad one at a random place after the event it follows."""
    position = {id(d): i for i, (_, d) in enumerate(valid)}
    slots: dict[int, list[tuple[str, bytes]]] = {}
    for provider, after, raw in bad:
        start = 0 if after is None else position[id(after)] + 1
        slots.setdefault(rng.randint(start, len(valid)), []).append((provider, raw))
    out: list[tuple[str, bytes]] = []
    for i, message in enumerate([*encoded(valid), None]):
        out.extend(slots.get(i, []))
        if message is not None:
            out.append(message)
    return out


@pytest.mark.slow
def test_poison_messages_go_to_dead_letters_and_valid_events_all_apply(
        database_url: str, db_schema: str, db: psycopg.Connection[Any], topic: str,
        kafka_config: dict[str, Any]) -> None:
    rng = random.Random(99)
    valid = list(history(5, 12, 1200))
    bad = bad_messages(valid, rng)
    publish(kafka_config, topic, interleave(valid, bad, rng))
    project_all(database_url, db_schema, topic, kafka_config)

    applied = {r[0] for r in db.execute("SELECT event_id::text FROM applied_events")}
    assert applied == {str(d["event_id"]) for _, d in valid}
    letters = db.execute("SELECT raw, reason FROM dead_letters").fetchall()
    assert len(letters) == BAD
    assert sorted(bytes(raw) for raw, _ in letters) == sorted(raw for _, _, raw in bad)
    reasons = [reason for _, reason in letters]
    assert all(reasons)
    for fragment in ("unknown schema fingerprint", "must not be negative",
                     "duplicate slot_index", "GPU slot(s)", "finished twice"):
        assert any(fragment in r for r in reasons), fragment
    row = db.execute("SELECT sum(next_offset) FROM projection_offsets").fetchone()
    assert row is not None and row[0] == len(valid) + BAD


@pytest.mark.slow
def test_dlq_list_parked_and_retry(database_url: str, db_schema: str,
                                   db: psycopg.Connection[Any], topic: str,
                                   kafka_config: dict[str, Any],
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    snap = f.snapshot("prov-late", minutes=0)
    waiting = f.run_started(snap, "run-waits", minutes=1)
    other = f.run_started(snap, "run-parked", minutes=2, gpu_slots=[1])
    much_later = f.provider_registered("prov-late", minutes=1 + 60 * 7)
    publish(kafka_config, topic, encoded([("RunStarted", waiting), ("ProviderRegistered",
                                                                   much_later),
                                          ("RunStarted", other)]))
    project_all(database_url, db_schema, topic, kafka_config)
    monkeypatch.setenv("HWLEDGER_DATABASE_URL", database_url)
    monkeypatch.setenv("HWLEDGER_DB_SCHEMA", db_schema)

    assert main(["dlq", "list"]) == 0
    (letter,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert letter["event_type"] == "RunStarted" and "waiting for snapshot" in letter["reason"]
    assert main(["dlq", "parked"]) == 0
    (parked,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert parked["event_id"] == other["event_id"]

    assert main(["dlq", "retry", str(letter["dead_letter_id"])]) == 1
    assert "still bad" in capsys.readouterr().err
    publish(kafka_config, topic, encoded([("HardwareSnapshotted", snap)]))
    project_all(database_url, db_schema, topic, kafka_config)
    assert db.execute("SELECT count(*) FROM runs").fetchone() == (1,)  # the parked one
    assert main(["dlq", "retry", str(letter["dead_letter_id"])]) == 0
    assert "applied" in capsys.readouterr().out
    db.commit()
    runs = {r[0] for r in db.execute("SELECT run_id FROM runs")}
    assert runs == {"run-waits", "run-parked"}
    assert main(["dlq", "retry", str(letter["dead_letter_id"])]) == 1
    assert "already retried" in capsys.readouterr().err
    assert main(["dlq", "retry", "999999"]) == 1
