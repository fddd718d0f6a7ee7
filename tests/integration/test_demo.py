"""The README's main command: `hwledger demo --once` on a fresh state folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("broker", [pytest.param("kafka", marks=pytest.mark.apache_kafka),
                                    "tansu"])
def test_demo_once_answers_the_sample_request(home: Path, broker: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HWLEDGER_")}
    env |= {"HWLEDGER_HOME": str(home), "COLUMNS": "200", "HWLEDGER_BROKER": broker}
    result = subprocess.run([sys.executable, "-m", "hwledger.deploy.cli", "demo", "--once"],
                            capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "provider(s) can host the request" in result.stdout
    assert "fleet console: http://" in result.stdout
    assert "nvidia/h100" in result.stdout and "amd/mi300x" in result.stdout
    assert "Traceback" not in result.stderr
    assert not (home / "stack.json").exists(), "the demo stops the stack it started"
