"""`hwledger dev up --detach && dev status && dev down`, and one-line errors for bad setups."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from hwledger.deploy.kafka_dist import KAFKA_VERSION
from hwledger.deploy.localstack import TANSU_NOTICE
from tests.cli import HWLEDGER, call, run, serving
from tests.servers import Servers

pytestmark = pytest.mark.slow


def old_java(tmp_path: Path) -> str:
    """A PATH whose `java` is too old for Apache Kafka (as on a machine without Java 17+)."""
    bin_dir = tmp_path / "old-java"
    bin_dir.mkdir()
    java = bin_dir / "java"
    java.write_text('#!/bin/sh\necho \'openjdk version "1.8.0_412"\' >&2\n')
    java.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.parametrize(("broker", "label"), [
    pytest.param("kafka", f"Apache Kafka {KAFKA_VERSION} (durable log)",
                 marks=pytest.mark.apache_kafka),
    ("tansu", "memory-only log")])
def test_dev_up_status_down(home: Path, broker: str, label: str) -> None:
    up = run(["dev", "up", "--detach", "--broker", broker], home)
    assert up.returncode == 0, up.stderr
    assert "HWLEDGER_DATABASE_URL=postgresql://" in up.stdout and label in up.stdout
    assert "HWLEDGER_QUERY_DATABASE_URL=postgresql://hwledger_query@" in up.stdout
    try:
        status = run(["dev", "status"], home)
        assert status.returncode == 0 and '"running": true' in status.stdout
        kafka = json.loads(status.stdout)["kafka"]
        assert label in kafka["broker"] and kafka["durable"] is (broker == "kafka")
        migrate = run(["db", "migrate"], home)
        assert migrate.returncode == 0 and "up to date" in migrate.stdout
        assert label in run(["status"], home).stdout
        assert "checked role 'hwledger_query'" in migrate.stdout
        with serving(home) as (_, base):
            assert call(base, "/readyz")[0] == 200
    finally:
        down = run(["dev", "down"], home)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert run(["dev", "status"], home).returncode == 3


def _count(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "count"})
    try:
        return sum(high - low for low, high in (
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions))
    finally:
        consumer.close()


@pytest.mark.apache_kafka
def test_the_apache_kafka_stack_keeps_every_event_across_down_and_up(home: Path) -> None:
    up = run(["dev", "up", "--detach"], home, HWLEDGER_BROKER="kafka")
    assert up.returncode == 0, up.stderr
    try:
        bootstrap = json.loads((home / "stack.json").read_text())["kafka_bootstrap"]
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        for i in range(50):
            producer.produce("hwledger.events", str(i).encode(), key=str(i).encode())
        assert producer.flush(30) == 0
        assert run(["dev", "down"], home).returncode == 0
        again = run(["dev", "up", "--detach"], home)  # Java is on PATH: Apache Kafka again
        assert again.returncode == 0, again.stderr
        assert "Apache Kafka" in again.stdout
        bootstrap = json.loads((home / "stack.json").read_text())["kafka_bootstrap"]
        assert _count(bootstrap, "hwledger.events") == 50
    finally:
        run(["dev", "down"], home)


@pytest.mark.apache_kafka
def test_dev_up_with_three_brokers_is_a_replicated_cluster(home: Path) -> None:
    up = run(["dev", "up", "--detach", "--broker", "kafka", "--brokers", "3"], home)
    try:
        assert up.returncode == 0, up.stderr
        assert "Apache Kafka 4.1.1, 3 brokers (durable log)" in up.stdout
        status = json.loads(run(["dev", "status"], home).stdout)["kafka"]
        assert status["running"] is True and len(status["bootstrap"].split(",")) == 3
        consumer = Consumer({"bootstrap.servers": status["bootstrap"], "group.id": "replicas"})
        try:
            topic = consumer.list_topics("hwledger.events", timeout=10).topics["hwledger.events"]
            assert {len(p.replicas) for p in topic.partitions.values()} == {3}
        finally:
            consumer.close()
    finally:
        down = run(["dev", "down"], home)
    assert down.returncode == 0 and run(["dev", "status"], home).returncode == 3
    assert run(["dev", "up", "--detach", "--broker", "tansu", "--brokers", "3"],
               home).stderr.strip() == ("hwledger: error: --brokers 3: only Apache Kafka runs "
                                        "as a cluster; use --broker kafka with 1 or more brokers")


def test_without_java_the_stack_is_tansu_with_a_one_line_notice(home: Path,
                                                                tmp_path: Path) -> None:
    path = old_java(tmp_path)
    refused = run(["dev", "up", "--detach", "--broker", "kafka"], home, PATH=path)
    assert refused.returncode == 1 and refused.stderr.strip() == (
        "hwledger: error: Apache Kafka needs Java 17+ on PATH: install it, or use --broker "
        "tansu (HWLEDGER_BROKER=tansu)")
    up = run(["dev", "up", "--detach"], home, PATH=path)
    try:
        assert up.returncode == 0, up.stderr
        assert up.stderr.strip() == TANSU_NOTICE
        assert "memory-only log" in up.stdout
    finally:
        run(["dev", "down"], home)


def test_an_unknown_broker_setting_is_one_line(home: Path) -> None:
    result = run(["dev", "up", "--detach"], home, HWLEDGER_BROKER="redpanda")
    assert result.returncode == 2 or result.returncode == 1
    assert result.stderr.strip().endswith("HWLEDGER_BROKER='redpanda' must be one of kafka, tansu")


def test_port_already_taken_is_one_line(home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(["dev", "up", "--detach", "--kafka-port", str(port)], home)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"hwledger: error: port {port} for the Kafka broker is "
                                     "already taken; pick another or omit it to use a free one")


def test_unreachable_database_is_one_line(home: Path) -> None:
    result = run(["db", "migrate"], home,
                 HWLEDGER_DATABASE_URL="postgresql://u:pw@127.0.0.1:1/x")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "HWLEDGER_DATABASE_URL" in result.stderr and "pw" not in result.stderr


def test_a_broker_that_is_not_kafka_is_one_line(home: Path, servers: Servers) -> None:
    pg_port = servers.database_url.rsplit(":", 1)[1].split("/")[0]
    from hwledger.deploy.kafka_admin import check_broker
    from hwledger.schemas.errors import UserError

    try:
        check_broker({"bootstrap.servers": f"127.0.0.1:{pg_port}"}, timeout=2)
    except UserError as exc:
        message = str(exc)
    else:
        raise AssertionError("a Postgres port was accepted as a Kafka broker")
    assert f"no Kafka broker answered at 127.0.0.1:{pg_port}" in message
    assert "\n" not in message


def test_malformed_seed_file_is_one_line(home: Path, tmp_path: Path, database_url: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    result = run(["db", "seed", "--file", str(bad)], home, HWLEDGER_DATABASE_URL=database_url)
    assert result.returncode == 1
    assert result.stderr.strip() == f"hwledger: error: {bad}: not valid JSON at line 1: " \
        "Expecting property name enclosed in double quotes"


def test_a_gpu_spec_file_breaking_a_formula_is_one_line(home: Path, tmp_path: Path,
                                                        database_url: str) -> None:
    shipped = Path(__file__).parents[2] / "seeds" / "gpu_specs.json"
    doc = json.loads(shipped.read_text("utf-8"))
    doc["gpu_specs"][0]["memory_bandwidth_gbps"] = 4000
    bad = tmp_path / "gpu_specs.json"
    bad.write_text(json.dumps(doc))
    result = run(["db", "seed", "--gpu-specs", str(bad)], home,
                 HWLEDGER_DATABASE_URL=database_url)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"hwledger: error: {bad}: 10de:2335: memory_bandwidth_gbps 4000 is not bus width x "
        "data rate / 8 = 4800")


def test_dev_up_in_the_foreground_stops_the_stack_on_sigterm(home: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HWLEDGER_")}
    process = subprocess.Popen([*HWLEDGER, "dev", "up"], stdout=subprocess.PIPE, text=True,
                               env=clean | {"HWLEDGER_HOME": str(home)})
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("running;"):
            break
    assert any("HWLEDGER_KAFKA_BOOTSTRAP=127.0.0.1:" in line for line in lines), lines
    assert run(["dev", "status"], home).returncode == 0
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0 and "stopped" in out
    assert run(["dev", "status"], home).returncode == 3


def test_commands_find_the_stack_from_any_directory(tmp_path: Path) -> None:
    """Without HWLEDGER_HOME the state folder is the XDG one, not the working directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HWLEDGER_")}
    env |= {"XDG_STATE_HOME": str(tmp_path / "state"), "HWLEDGER_BROKER": "tansu"}
    one, other = tmp_path / "one", tmp_path / "other"
    one.mkdir()
    other.mkdir()

    def hwledger(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*HWLEDGER, *args], capture_output=True, text=True, timeout=120,
                              cwd=cwd, env=env)

    up = hwledger("dev", "up", "--detach", cwd=one)
    try:
        assert up.returncode == 0, up.stderr
        assert (tmp_path / "state" / "hwledger" / "stack.json").exists()
        assert hwledger("dev", "status", cwd=other).returncode == 0
    finally:
        assert hwledger("dev", "down", cwd=other).returncode == 0
    assert not (one / ".hwledger").exists()
