"""A lost log never passes silently: the topic is deleted and re-created under a running
projector; the partitions whose stored offset the new log does not hold stop, with a metric and
a `hwledger status` alarm, and resume from the log start after `hwledger offsets reset`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from hwledger.deploy.cli import main
from hwledger.deploy.kafka_admin import ensure_topic
from hwledger.projectors.metrics import Metrics
from hwledger.projectors.service import Projector
from hwledger.schemas.db import connect
from tests import factories as f
from tests.integration.projector_support import (
    encoded,
    projector_config,
    publish,
    stored_total,
)
from tests.servers import broker_under_test
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def _recreate(kafka_config: dict[str, Any], topic: str) -> None:
    admin = AdminClient({**kafka_config, "log_level": 0})
    admin.delete_topics([topic], operation_timeout=10)[topic].result(15)
    wait_until(lambda: topic not in admin.list_topics(timeout=5).topics, 30, "the topic to go")
    ensure_topic(kafka_config, topic, 3)


LoseLog = Callable[[dict[str, Any], str], None]


def _applied(db: psycopg.Connection[Any]) -> set[str]:
    rows = db.execute("SELECT event_id::text FROM applied_events").fetchall()
    db.commit()
    return {r[0] for r in rows}


def _behind_the_stored_offsets(database_url: str, schema: str) -> LoseLog:
    """The log as a broker that lost its data leaves it: shorter than what was projected
    (here: the stored offsets moved past the log's end)."""
    def lose(kafka_config: dict[str, Any], topic: str) -> None:
        with connect(database_url, schema) as conn:
            conn.execute("UPDATE projection_offsets SET next_offset = next_offset + 1000")
    return lose


@pytest.mark.parametrize("how", ["stored offsets beyond the log", "topic re-created"])
def test_a_lost_log_stops_its_partitions_with_an_alarm_until_reset(
        how: str, database_url: str, db_schema: str, db: psycopg.Connection[Any], topic: str,
        kafka_config: dict[str, Any], home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    if broker_under_test() != "kafka":
        pytest.skip("needs Apache Kafka (Java 17+, or HWLEDGER_TEST_BROKER=kafka): Tansu "
                    "serves an offset beyond its end as an empty fetch, and librdkafka crashes "
                    "when a topic is re-created under Tansu")
    lose_log = _recreate if how == "topic re-created" else _behind_the_stored_offsets(
        database_url, db_schema)
    before = [("HardwareSnapshotted", f.snapshot(f"prov-{i % 6}", f"n{i}", seed=f"b{i}"))
              for i in range(48)]
    after = [("HardwareSnapshotted", f.snapshot(f"prov-{i % 6}", f"m{i}", seed=f"a{i}"))
             for i in range(6)]
    publish(kafka_config, topic, encoded(before))
    config = replace(projector_config(database_url, db_schema, topic, kafka_config),
                     idle_exit_seconds=None, exit_when_caught_up=False)
    metrics = Metrics()
    projector = Projector(config, metrics)
    thread = threading.Thread(target=projector.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: stored_total(database_url, db_schema, topic) == len(before), 60,
              "the first events")
        lose_log(kafka_config, topic)
        publish(kafka_config, topic, encoded(after))

        def lost() -> list[int]:
            return [p for p in range(3) if metrics.registry.get_sample_value(
                "hwledger_projector_log_lost", {"partition": str(p)}) == 1]
        wait_until(lambda: len(lost()) == 3, 60, "the lost-log alarm on every partition")
        halted = lost()
        assert thread.is_alive()
        new_ids = {str(d["event_id"]) for _, d in after}
        assert not new_ids & _applied(db)  # nothing of the new log was skipped into place

        for name, value in {"HWLEDGER_HOME": str(home), "HWLEDGER_DATABASE_URL": database_url,
                            "HWLEDGER_KAFKA_BOOTSTRAP": kafka_config["bootstrap.servers"],
                            "HWLEDGER_TOPIC": topic, "HWLEDGER_DB_SCHEMA": db_schema,
                            "COLUMNS": "200"}.items():
            monkeypatch.setenv(name, value)
        assert main(["status"]) == 3  # the query service is not running either
        out = capsys.readouterr().out
        assert "log lost" in out and "hwledger offsets reset --partition" in out

        args = ["offsets", "reset"]
        for partition in range(3):
            args += ["--partition", str(partition)]
        assert main(args) == 0
        assert "-> 0" in capsys.readouterr().out
        main(["status"])
        assert "log lost" not in capsys.readouterr().out
        assert halted
        assert main(["offsets", "reset", "--partition", "0"]) == 1
        assert "nothing to reset" in capsys.readouterr().err
    finally:
        projector.stop()
        thread.join(30)
    assert not thread.is_alive()

    restarted = Projector(replace(config, idle_exit_seconds=3.0), Metrics())
    restarted.run()
    assert new_ids <= _applied(db) and not restarted.halted
