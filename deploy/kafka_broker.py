"""Apache Kafka in KRaft mode on loopback ports: one combined broker + controller node, or a
`KafkaCluster` of three such nodes (a quorum of three, replication factor 3,
`min.insync.replicas=2`) for fault tests.

A node's config is generated (small heap, no initial rebalance delay, 3 partitions for the
consumer-offsets topic instead of 50, which a first consumer group would wait for), its log
directory is formatted once and kept, so a restart (also after SIGKILL) finds every event. A
node counts as started when a metadata request to it succeeds.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

from hwledger.deploy.kafka_admin import check_broker
from hwledger.deploy.kafka_dist import classpath
from hwledger.schemas.errors import UserError

READY_TIMEOUT_S = 90.0
HEAP = "-Xmx512m"
CLUSTER_HEAP = "-Xmx384m"
STOP_TIMEOUT_S = 30.0


def voters(controller_ports: list[int]) -> str:
    """`controller.quorum.voters` for nodes 1..n on these loopback controller ports."""
    return ",".join(f"{i}@127.0.0.1:{port}" for i, port in enumerate(controller_ports, start=1))


def server_properties(log_dir: Path, port: int, controller_port: int, *, node_id: int = 1,
                      quorum: str | None = None, replicas: int = 1) -> str:
    """A node's server.properties: both broker and controller. `quorum` names every voter
    (default: this node alone); `replicas` is the replication factor of every topic, with
    `min.insync.replicas` 2 once there are replicas to spare."""
    in_sync = str(min(2, replicas))
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": quorum or f"{node_id}@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "default.replication.factor": str(replicas),
        "min.insync.replicas": in_sync,
        "offsets.topic.num.partitions": "3",
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": in_sync,
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": in_sync,
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        "auto.create.topics.enable": "false",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


class ApacheKafkaBroker:
    """An Apache Kafka node whose config, log directory and output live under `root`.

    Alone by default; as node `node_id` of a cluster, `quorum` names every voter, `replicas`
    is the topics' replication factor and every node is formatted with `cluster_id`."""

    def __init__(self, root: Path, *, node_id: int = 1, quorum: str | None = None,
                 replicas: int = 1, cluster_id: str | None = None, heap: str = HEAP) -> None:
        self.root = root.resolve()
        self.log = self.root / "broker.log"
        self.log_dir = self.root / "data"
        self.config = self.root / "server.properties"
        self.node_id, self.quorum, self.replicas = node_id, quorum, replicas
        self.cluster_id = cluster_id
        self.heap = heap
        self.process: subprocess.Popen[bytes] | None = None

    def _java(self, main: str, args: list[str]) -> list[str]:
        return ["java", self.heap, "-cp", classpath(), main, *args]

    def _format(self) -> None:
        if (self.log_dir / "meta.properties").exists():
            return
        with self.log.open("ab") as log:
            done = subprocess.run(
                self._java("kafka.tools.StorageTool",
                           ["format", "--config", str(self.config), "--cluster-id",
                            self.cluster_id or uuid.uuid4().hex[:22]]),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            raise UserError(f"formatting the Kafka log failed (exit {done.returncode}); "
                            f"see {self.log}")

    def start(self, port: int, controller_port: int, *, detach: bool = False) -> int:
        """Write the config, format storage on first use, start; returns the pid once a
        metadata request succeeds."""
        pid = self.launch(port, controller_port, detach=detach)
        self.wait_ready(port)
        return pid

    def launch(self, port: int, controller_port: int, *, detach: bool = False) -> int:
        """Write the config, format storage on first use and start the process; returns its
        pid without waiting (a cluster's node answers only once a quorum is up)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(server_properties(
            self.log_dir, port, controller_port, node_id=self.node_id, quorum=self.quorum,
            replicas=self.replicas), "utf-8")
        self._format()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self._java("kafka.Kafka", [str(self.config)]),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=detach)
        return self.process.pid

    def wait_ready(self, port: int) -> None:
        """Return once a metadata request to `port` succeeds; UserError if the process exits
        or READY_TIMEOUT_S passes first."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise UserError(f"the Kafka broker exited (code {self.process.returncode}); "
                                f"see {self.log}")
            try:
                check_broker({"bootstrap.servers": f"127.0.0.1:{port}"}, timeout=2.0)
                return
            except UserError:
                if time.monotonic() > deadline:
                    raise UserError(f"the Kafka broker did not answer within "
                                    f"{READY_TIMEOUT_S:g}s; see {self.log}") from None


class KafkaCluster:
    """Combined broker + controller nodes (three for fault tests) on the given loopback ports,
    one broker and one controller port each; a restarted node keeps its ports and its log under
    `root/node-<id>`. Every node votes in the KRaft quorum, every topic has one replica per
    node, `min.insync.replicas=2`."""

    def __init__(self, root: Path, ports: list[int], controller_ports: list[int]) -> None:
        self.root = root.resolve()
        self.ports, self.controller_ports = ports, controller_ports
        cluster_id = uuid.uuid4().hex[:22]
        self.nodes = [
            ApacheKafkaBroker(self.root / f"node-{i}", node_id=i,
                              quorum=voters(controller_ports), replicas=len(ports),
                              cluster_id=cluster_id, heap=CLUSTER_HEAP)
            for i in range(1, len(ports) + 1)]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self, *, detach: bool = False) -> list[int]:
        """Start every node at once (none answers before a quorum is up); returns their pids
        once each answers a metadata request that lists all of them."""
        pids = [node.launch(port, controller, detach=detach) for node, port, controller
                in zip(self.nodes, self.ports, self.controller_ports, strict=True)]
        for node, port in zip(self.nodes, self.ports, strict=True):
            node.wait_ready(port)
        self._wait_all_registered()
        return pids

    def _wait_all_registered(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(check_broker({"bootstrap.servers": self.bootstrap}).brokers) < len(self.nodes):
            if time.monotonic() > deadline:
                raise UserError(f"the Kafka cluster under {self.root} did not register all "
                                f"{len(self.nodes)} brokers within {READY_TIMEOUT_S:g}s")
            time.sleep(0.2)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (its log stays for `restart`)."""
        process = self.nodes[node_id - 1].process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self, node_id: int) -> None:
        """Start one stopped or killed node on its ports and log; return once it answers."""
        i = node_id - 1
        self.nodes[i].start(self.ports[i], self.controller_ports[i])
        self._wait_all_registered()

    def stop(self) -> None:
        """Stop every running node: SIGTERM to all at once (a node stopping alone would wait
        for a quorum the others no longer form), SIGKILL what is left after STOP_TIMEOUT_S."""
        running = [n.process for n in self.nodes if n.process and n.process.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
