"""Running `hwledger` as a subprocess with a clean environment, for the CLI's exit-code tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HWLEDGER = [sys.executable, "-m", "hwledger.deploy.cli"]


def run(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`hwledger ARGS` with no HWLEDGER_* setting but HWLEDGER_HOME=home and `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HWLEDGER_")}
    return subprocess.run([*HWLEDGER, *args], capture_output=True, text=True, timeout=120,
                          env=clean | {"HWLEDGER_HOME": str(home)} | env)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single `hwledger: error: ...` line a refused command printed (asserted so)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hwledger: error: "), result.stderr
    return lines[0]
