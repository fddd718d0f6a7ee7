"""Faults only a real, durable broker can host: Apache Kafka (Java 17+, or
HWLEDGER_TEST_BROKER=kafka).

Events flow through the real publisher (with its spool) and the real projector while brokers
are killed and restarted or projectors come and go; afterwards the live tables are compared
with a clean replay of the log into a scratch schema (what `hwledger verify` does), and the
events lost (accepted but absent from the tables) and applied twice (rows the clean replay
does not have) are printed and must both be zero.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from hwledger.deploy.bench.fleet import history
from hwledger.deploy.cli import main
from hwledger.deploy.commands.rebuild import log_size
from hwledger.deploy.kafka_admin import ensure_topic
from hwledger.deploy.kafka_broker import KafkaCluster
from hwledger.deploy.kafka_dist import classpath
from hwledger.producers.publisher import Publisher
from hwledger.projectors.rebuild import rebuild
from hwledger.projectors.service import Projector
from hwledger.projectors.verify import compare
from hwledger.schemas.db import connect
from hwledger.schemas.events import EventData
from hwledger.schemas.migrations import drop_schema
from tests.integration.projector_support import (
    encoded,
    fresh_schema,
    project_all,
    projector_config,
    publish,
    stored_total,
)
from tests.servers import broker_under_test, kafka_cluster
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    broker_under_test() != "kafka",
    reason="needs Apache Kafka (Java 17+, or HWLEDGER_TEST_BROKER=kafka): Tansu keeps its log "
           "in memory, so it survives no broker restart and has no replication")]

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 3


@contextlib.contextmanager
def cluster_of(size: int) -> Iterator[KafkaCluster]:
    """A cluster of its own, outside pytest's numbered temp folders (see conftest)."""
    workdir = Path(tempfile.mkdtemp(prefix="hwledger-test-faults-"))
    try:
        with kafka_cluster(workdir, size) as cluster:
            yield cluster
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def one_broker() -> Iterator[KafkaCluster]:
    """A single Apache Kafka node this module may kill and restart."""
    with cluster_of(1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def three_brokers() -> Iterator[KafkaCluster]:
    with cluster_of(3) as cluster:
        yield cluster


def new_topic(cluster: KafkaCluster) -> tuple[dict[str, Any], str]:
    """librdkafka settings for the cluster and a fresh topic with a replica on every node."""
    kafka = {"bootstrap.servers": cluster.bootstrap}
    topic = f"hwledger.faults.{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka, topic, PARTITIONS, replicas=len(cluster.nodes))
    return kafka, topic


class Feed(threading.Thread):
    """Publishes `events` through the publisher in `chunks` spread over `seconds`; the ids
    the publisher accepted (spooled) are in `accepted`."""

    def __init__(self, publisher: Publisher, events: Sequence[EventData], chunks: int,
                 seconds: float) -> None:
        super().__init__(daemon=True)
        self.publisher, self.events = publisher, events
        self.chunks, self.pause = chunks, seconds / chunks
        self.accepted: list[str] = []

    def run(self) -> None:
        size = -(-len(self.events) // self.chunks)
        for start in range(0, len(self.events), size):
            self.accepted += self.publisher.publish_many(self.events[start:start + size])
            time.sleep(self.pause)


def acknowledged(publisher: Publisher) -> int:
    """Events the broker has acknowledged: spooled once, no longer waiting."""
    return publisher.spool.last_seq() - publisher.pending()


class LiveProjector:
    """The real projector in a thread of its own: `leave()` stops it (it leaves the group)."""

    def __init__(self, database_url: str, schema: str, topic: str, kafka: dict[str, Any],
                 group: str | None = None) -> None:
        config = replace(projector_config(database_url, schema, topic, kafka, group),
                         idle_exit_seconds=None, exit_when_caught_up=False)
        self.projector = Projector(config)
        self.thread = threading.Thread(target=self.projector.run, daemon=True)
        self.thread.start()

    def leave(self) -> None:
        self.projector.stop()
        self.thread.join(60)
        assert not self.thread.is_alive()


@contextlib.contextmanager
def projecting(database_url: str, schema: str, topic: str, kafka: dict[str, Any]
               ) -> Iterator[LiveProjector]:
    """A live projector until the block ends."""
    live = LiveProjector(database_url, schema, topic, kafka)
    try:
        yield live
    finally:
        live.leave()


def caught_up(database_url: str, schema: str, topic: str, kafka: dict[str, Any],
              seconds: float = 180) -> None:
    """Wait until `schema` has projected every message in the log."""
    wait_until(lambda: stored_total(database_url, schema, topic) == log_size(kafka, topic),
             seconds, "the projection to reach the end of the log")


@dataclass(frozen=True)
class Figures:
    """A live schema against a clean replay of the same log."""

    accepted: int
    in_log: int
    """messages in the log (a resend after a lost acknowledgement may add a copy)"""
    lost: int
    """accepted events the live tables do not have"""
    twice: int
    """rows of the live tables the clean replay does not have (an event applied again)"""
    differing: tuple[str, ...]


def against_clean_replay(database_url: str, live: str, topic: str, kafka: dict[str, Any],
                         accepted: Sequence[str]) -> Figures:
    """Replay the whole log into a scratch schema (as `hwledger verify`) and compare."""
    scratch = f"verify_{uuid.uuid4().hex[:10]}"
    rebuild(database_url, topic, kafka, switch=False, schema=scratch)
    try:
        diffs = compare(database_url, live, scratch, limit=1_000_000)
        with connect(database_url, live) as conn:
            applied = {str(r[0]) for r in conn.execute(
                "SELECT event_id::text FROM applied_events").fetchall()}
    finally:
        drop_schema(database_url, scratch)
    figures = Figures(len(accepted), log_size(kafka, topic), len(set(accepted) - applied),
                      sum(len(d.only_in_a) for d in diffs),
                      tuple(d.table for d in diffs if not d.equal))
    print(f"\n{topic}: {figures.accepted} events accepted, {figures.in_log} messages in the "
          f"log, {figures.lost} lost, {figures.twice} applied twice, tables differing from "
          f"a clean replay: {list(figures.differing) or 'none'}")
    return figures


def assert_exactly_once(figures: Figures) -> None:
    assert (figures.lost, figures.twice, figures.differing) == (0, 0, ())


def watermarks(kafka: dict[str, Any], topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    """(low, high) per partition, as the broker reports them."""
    consumer = Consumer({**kafka, "group.id": f"w-{uuid.uuid4().hex[:8]}"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in range(partitions)}
    finally:
        consumer.close()


def test_status_lag_per_partition_equals_the_broker_watermarks(
        database_url: str, db_schema: str, kafka_config: dict[str, Any], topic: str,
        home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    messages = encoded(history(14, 12, 900))
    projected, later = messages[:600], messages[600:]
    producer = Producer({**kafka_config, "enable.idempotence": True})
    for key, value in projected:
        producer.produce(topic, value, key=key)
    assert producer.flush(30) == 0
    project_all(database_url, db_schema, topic, kafka_config, idle=60)  # caught up: stops
    behind: dict[int, int] = {0: 0, 1: 0, 2: 0}

    def count(error: Any, message: Any) -> None:
        assert error is None
        behind[message.partition()] += 1
    for key, value in later:
        producer.produce(topic, value, key=key, on_delivery=count)
    assert producer.flush(30) == 0
    assert min(behind.values()) > 0  # every partition is behind by its own count

    for name, value in {"HWLEDGER_HOME": str(home), "HWLEDGER_DATABASE_URL": database_url,
                        "HWLEDGER_KAFKA_BOOTSTRAP": kafka_config["bootstrap.servers"],
                        "HWLEDGER_TOPIC": topic, "HWLEDGER_DB_SCHEMA": db_schema,
                        "COLUMNS": "200"}.items():
        monkeypatch.setenv(name, value)
    main(["status"])
    out = capsys.readouterr().out
    shown = {int(p): (int(lag), int(high)) for p, lag, high in re.findall(
        r"partition (\d+)\W+ok\W+lag (\d+) \(next offset \d+, high watermark (\d+)\)", out)}
    broker = watermarks(kafka_config, topic, 3)
    print(f"status lag per partition {shown}, broker watermarks {broker}")
    assert shown == {p: (behind[p], broker[p][1]) for p in range(3)}, out
    assert f"{len(later)} events behind" in out


def compose_topic_command() -> list[str]:
    """The arguments of deploy/compose.yaml's one-shot `topic` service (kafka-topics.sh)."""
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text("utf-8"))
    service = compose["services"]["topic"]
    assert service["entrypoint"] == ["/opt/kafka/bin/kafka-topics.sh"]
    return [str(arg) for arg in service["command"]]


def test_the_compose_topic_command_creates_the_topic_it_describes(
        kafka_config: dict[str, Any]) -> None:
    args = compose_topic_command()
    name = f"hwledger.compose.{uuid.uuid4().hex[:8]}"
    args[args.index("--bootstrap-server") + 1] = kafka_config["bootstrap.servers"]
    wanted_partitions = int(args[args.index("--partitions") + 1])
    wanted_config = dict(arg.split("=", 1) for i, arg in enumerate(args)
                         if i > 0 and args[i - 1] == "--config")
    args[args.index("--topic") + 1] = name
    for _ in range(2):  # --if-not-exists: a second run changes nothing and succeeds
        done = subprocess.run(
            ["java", "-Xmx256m", "-cp", classpath(), "org.apache.kafka.tools.TopicCommand",
             *args], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    admin = AdminClient({**kafka_config, "log_level": 0})
    metadata = admin.list_topics(name, timeout=10).topics[name]
    assert len(metadata.partitions) == wanted_partitions
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    described = admin.describe_configs([resource])[resource].result(15)
    read_back = {key: described[key].value for key in wanted_config}
    print(f"topic {name}: {wanted_partitions} partitions, config read back {read_back}")
    assert wanted_config == {"retention.ms": "-1"} and read_back == wanted_config
    assert not described["retention.ms"].is_default


SIGKILL_EVENTS = 20_000


def test_sigkill_of_the_broker_under_load_loses_nothing_and_applies_nothing_twice(
        database_url: str, one_broker: KafkaCluster, tmp_path: Path) -> None:
    """The single broker is SIGKILLed while 20,000 events are being published and projected
    and restarted on the same log; the publisher resumes within seconds."""
    kafka, topic = new_topic(one_broker)
    events = list(history(2026, 60, SIGKILL_EVENTS))
    with fresh_schema(database_url) as live:
        with Publisher(kafka, topic, tmp_path / "spool") as publisher, \
                projecting(database_url, live, topic, kafka):
            feed = Feed(publisher, events, chunks=40, seconds=12)
            feed.start()
            wait_until(lambda: stored_total(database_url, live, topic) > 0
                     and len(feed.accepted) >= SIGKILL_EVENTS // 4, 60, "events to flow")
            one_broker.kill(1)
            publishing_at_kill = feed.is_alive()
            projected_at_kill = stored_total(database_url, live, topic)
            time.sleep(1)
            one_broker.restart(1)
            before, waiting = acknowledged(publisher), publisher.pending()
            recovery = wait_until(lambda: acknowledged(publisher) > before, 60,
                                "the publisher's first delivery after the restart")
            assert publishing_at_kill and waiting > 0  # killed while publishing
            assert projected_at_kill < SIGKILL_EVENTS  # and while projecting
            feed.join()
            assert publisher.flush(120) == 0
            caught_up(database_url, live, topic, kafka)
        figures = against_clean_replay(database_url, live, topic, kafka, feed.accepted)
    print(f"publisher recovery after the broker restart: {recovery:.2f} s to the first "
          f"acknowledged event ({waiting} events waited in the spool)")
    assert figures.accepted == SIGKILL_EVENTS
    assert_exactly_once(figures)
    # no ~30 s UNKNOWN_PRODUCER_ID stall as on Tansu (the margin is librdkafka's reconnect
    # backoff, up to 10 s after a long outage; measured 0.1-1.4 s)
    assert recovery < 20


def accepted_ids(events: Sequence[EventData]) -> list[str]:
    return [str(data["event_id"]) for _, data in events]


def test_a_rebuild_from_offset_0_after_a_broker_restart_equals_the_live_tables(
        database_url: str, one_broker: KafkaCluster) -> None:
    kafka, topic = new_topic(one_broker)
    events = list(history(77, 30, 5000))
    publish(kafka, topic, encoded(events))
    with fresh_schema(database_url) as live:
        project_all(database_url, live, topic, kafka, idle=60)
        one_broker.stop()
        one_broker.start()
        figures = against_clean_replay(database_url, live, topic, kafka, accepted_ids(events))
    assert figures.in_log == len(events)
    assert_exactly_once(figures)


def test_three_projectors_joining_and_leaving_the_leader_included_equal_a_clean_replay(
        database_url: str, kafka_config: dict[str, Any], topic: str, tmp_path: Path) -> None:
    """Projectors join and leave one at a time while events flow; the first to join leads
    the group (classic protocol) and leaves while the others go on, so Apache Kafka elects a
    new group leader."""
    events = list(history(3, 40, 6000))
    group = f"faults-{topic}"
    with fresh_schema(database_url) as live, \
            Publisher(kafka_config, topic, tmp_path / "spool") as publisher:
        feed = Feed(publisher, events, chunks=50, seconds=25)  # flowing through 5 changes
        feed.start()
        changes: list[int] = []

        def progressing() -> None:
            """Wait until the group projects again after a join or leave."""
            before = stored_total(database_url, live, topic)
            wait_until(lambda: stored_total(database_url, live, topic) > before, 30,
                     "the group to project again")
            changes.append(before)

        def join() -> LiveProjector:
            member = LiveProjector(database_url, live, topic, kafka_config, group)
            progressing()
            return member

        leader = join()
        second, third = join(), join()
        leader.leave()  # the group leader goes; the two others re-form the group
        progressing()
        fourth = join()
        second.leave()
        progressing()
        feed.join()
        assert publisher.flush(60) == 0
        caught_up(database_url, live, topic, kafka_config)
        third.leave()
        fourth.leave()
        figures = against_clean_replay(database_url, live, topic, kafka_config, feed.accepted)
    assert changes[-1] < len(events)  # the group changed while events were still flowing
    assert_exactly_once(figures)


def leader_of(kafka: dict[str, Any], topic: str, partition: int) -> int:
    """The node id leading `partition` now."""
    admin = AdminClient({**kafka, "log_level": 0})
    return int(admin.list_topics(topic, timeout=10).topics[topic].partitions[partition].leader)


def test_three_brokers_lose_two_one_after_the_other_and_nothing_acknowledged_is_lost(
        database_url: str, three_brokers: KafkaCluster, tmp_path: Path) -> None:
    """Under load (publish + project) the leader of partition 0 is SIGKILLed: the two others
    go on. Then a second broker: with one replica left `min.insync.replicas=2` refuses every
    write, and the spool holds it. Both return: everything flows, once."""
    kafka, topic = new_topic(three_brokers)
    events = list(history(33, 40, 9000))
    with fresh_schema(database_url) as live:
        with Publisher(kafka, topic, tmp_path / "spool") as publisher, \
                projecting(database_url, live, topic, kafka):
            feed = Feed(publisher, events, chunks=72, seconds=36)
            feed.start()
            wait_until(lambda: stored_total(database_url, live, topic) > 0
                     and len(feed.accepted) >= len(events) // 6, 60, "events to flow")
            first = leader_of(kafka, topic, 0)
            three_brokers.kill(first)
            after_first = acknowledged(publisher)
            wait_until(lambda: acknowledged(publisher) > after_first + 500, 60,
                     "two brokers to acknowledge")
            second = next(n for n in (1, 2, 3) if n != first)
            three_brokers.kill(second)
            seen: list[int | None] = [None]

            def settled() -> bool:  # no delivery within the last two seconds
                now = acknowledged(publisher)
                same = now == seen[0]
                seen[0] = now
                return same

            wait_until(settled, 30, "what was in flight to settle", interval=2.0)
            refused_from, spooled_from = acknowledged(publisher), len(feed.accepted)
            refused_for = wait_until(lambda: len(feed.accepted) >= spooled_from + 500, 60,
                                     "the feed to publish 500 events during the refusal")
            held = len(feed.accepted) - spooled_from
            assert feed.is_alive() and held > 0  # the feed went on during the refusal
            assert acknowledged(publisher) == refused_from  # nothing got through
            assert publisher.pending() >= held  # the spool holds it
            returning = time.monotonic()
            three_brokers.restart(first)
            three_brokers.restart(second)
            feed.join()
            assert publisher.flush(180) == 0
            back = time.monotonic() - returning
            caught_up(database_url, live, topic, kafka)
        figures = against_clean_replay(database_url, live, topic, kafka, feed.accepted)
    print(f"nodes {first} then {second} killed; {held} events published in {refused_for:.1f} s "
          "with one broker left, none acknowledged, all spooled; the spool drained "
          f"{back:.1f} s after the restarts began")
    assert figures.accepted == len(events)
    assert_exactly_once(figures)
