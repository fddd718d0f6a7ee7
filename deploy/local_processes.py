"""Loopback ports and local server processes: free ports, waiting for a listener, stopping.

Shell. `free_port` / `require_free` / `reuse_port` pick a port on 127.0.0.1, `wait_for_port`
waits until a server listens on one, and `stop_pid` / `stop_pids` SIGTERM then SIGKILL
processes, as the local stack and the tests' servers start and stop them.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from hwledger.schemas.errors import UserError


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


def wait_for_port(port: int, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise UserError(f"{what} did not start listening on 127.0.0.1:{port} within {timeout:g}s; "
                    f"see {log}")


def reuse_port(port: int | None) -> int:
    """`port` when it is still free, else a new free port."""
    if port:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                pass
    return free_port()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_pid(pid: int, timeout: float = 10) -> None:
    """SIGTERM a process, SIGKILL it if it has not exited within `timeout`."""
    stop_pids([pid], timeout)


def stop_pids(pids: Sequence[int], timeout: float = 10) -> None:
    """SIGTERM the processes all at once (a cluster node stopping alone would wait for a
    quorum the others no longer form), SIGKILL those still running after `timeout`."""
    running = [pid for pid in pids if alive(pid)]
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
        return not alive(pid)
