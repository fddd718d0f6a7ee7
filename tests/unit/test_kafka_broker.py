"""The generated Apache Kafka node config: alone, or one voter of a three-node cluster."""

from __future__ import annotations

from pathlib import Path

from hwledger.deploy.kafka_broker import server_properties, voters


def _parsed(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_a_single_node_is_its_own_quorum_with_one_replica() -> None:
    props = _parsed(server_properties(Path("/data"), 9092, 9093))
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert {props[k] for k in ("default.replication.factor", "min.insync.replicas",
                               "offsets.topic.replication.factor",
                               "transaction.state.log.replication.factor",
                               "transaction.state.log.min.isr")} == {"1"}


def test_a_cluster_node_votes_with_all_and_keeps_three_replicas_two_in_sync() -> None:
    quorum = voters([9101, 9102, 9103])
    assert quorum == "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103"
    props = _parsed(server_properties(Path("/n2"), 9002, 9102, node_id=2, quorum=quorum,
                                      replicas=3))
    assert props["node.id"] == "2" and props["controller.quorum.voters"] == quorum
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9002,CONTROLLER://127.0.0.1:9102"
    assert props["log.dirs"] == "/n2"
    assert props["default.replication.factor"] == "3"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["transaction.state.log.min.isr"] == "2"
