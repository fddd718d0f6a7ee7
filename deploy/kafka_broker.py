"""One Apache Kafka broker in KRaft mode (combined broker + controller) on loopback ports.

Its config is generated (small heap, replication factors 1, no initial rebalance delay), its
log directory is formatted once and kept, so a restart (also after SIGKILL) finds every event.
It counts as started when a metadata request succeeds.
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


def server_properties(log_dir: Path, port: int, controller_port: int) -> str:
    """The broker's server.properties: one node that is both broker and controller."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        "auto.create.topics.enable": "false",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


class ApacheKafkaBroker:
    """An Apache Kafka broker whose config, log directory and output live under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.log = self.root / "broker.log"
        self.log_dir = self.root / "data"
        self.config = self.root / "server.properties"
        self.process: subprocess.Popen[bytes] | None = None

    def _java(self, main: str, args: list[str]) -> list[str]:
        return ["java", HEAP, "-cp", classpath(), main, *args]

    def _format(self) -> None:
        if (self.log_dir / "meta.properties").exists():
            return
        with self.log.open("ab") as log:
            done = subprocess.run(
                self._java("kafka.tools.StorageTool",
                           ["format", "--config", str(self.config), "--cluster-id",
                            uuid.uuid4().hex[:22]]),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            raise UserError(f"formatting the Kafka log failed (exit {done.returncode}); "
                            f"see {self.log}")

    def start(self, port: int, controller_port: int, *, detach: bool = False) -> int:
        """Write the config, format storage on first use, start; returns the pid once a
        metadata request succeeds."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(server_properties(self.log_dir, port, controller_port), "utf-8")
        self._format()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self._java("kafka.Kafka", [str(self.config)]),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=detach)
        self._wait_ready(port)
        return self.process.pid

    def _wait_ready(self, port: int) -> None:
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
