"""The real `hwledger` commands in their own processes, for tests of what they print, exit with
and answer.

`run` runs one command to its end; `one_line_error` is the single error line a refused command
printed; `serving` keeps `hwledger serve` up for a block; `call` asks it over HTTP. Each starts
from an environment without HWLEDGER_* settings but HWLEDGER_HOME and those given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hwledger.deploy.local_processes import free_port
from tests.waiting import wait_until

HWLEDGER = [sys.executable, "-m", "hwledger.deploy.cli"]


def _environment(home: Path, env: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HWLEDGER_")}
    return clean | {"HWLEDGER_HOME": str(home)} | env


def run(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`hwledger ARGS` with no HWLEDGER_* setting but HWLEDGER_HOME=home and `env`."""
    return subprocess.run([*HWLEDGER, *args], capture_output=True, text=True, timeout=120,
                          env=_environment(home, env))


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single `hwledger: error: ...` line a refused command printed (asserted so)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hwledger: error: "), result.stderr
    return lines[0]


@contextmanager
def serving(home: Path, log_level: str = "warning", *args: str, **env: str
            ) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`hwledger serve ARGS` on a free port; yields the process (its output piped) and its base
    URL once /healthz answers, and stops it after the block."""
    port = free_port()
    process = subprocess.Popen(
        [*HWLEDGER, "serve", "--port", str(port), "--log-level", log_level, *args], text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_environment(home, env))
    base = f"http://127.0.0.1:{port}"
    try:
        def answers() -> bool:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2):
                    return True
            except OSError:
                assert process.poll() is None, process.communicate()
                return False

        wait_until(answers, 30, "serve to answer /healthz", interval=0.1)
        yield process, base
    finally:
        process.terminate()
        process.wait(10)


def call(base: str, path: str, body: Any = None) -> tuple[int, Any]:
    """GET `path` (POST `body` as JSON when given); the status and the decoded answer."""
    request = urllib.request.Request(
        base + path, data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
