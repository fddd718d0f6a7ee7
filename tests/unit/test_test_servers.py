"""The suite reaches only servers named for tests; production settings are ignored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import named_servers, production_variables

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {"HWLEDGER_DATABASE_URL": "postgresql://prod:pw@db.example:5432/hwledger",
              "HWLEDGER_KAFKA_BOOTSTRAP": "kafka.example:9092"}


def test_production_urls_name_no_test_server() -> None:
    assert named_servers(PRODUCTION) == (None, None)


def test_test_urls_name_the_test_servers() -> None:
    environ = {**PRODUCTION, "HWLEDGER_TEST_DATABASE_URL": "postgresql://t@127.0.0.1/t",
               "HWLEDGER_TEST_KAFKA_BOOTSTRAP": "127.0.0.1:19092"}
    assert named_servers(environ) == ("postgresql://t@127.0.0.1/t", "127.0.0.1:19092")


def test_only_non_test_hwledger_settings_are_production() -> None:
    environ = {**PRODUCTION, "HWLEDGER_TEST_DATABASE_URL": "x", "HWLEDGER_KAFKA_OPT_ACKS": "1",
               "PATH": "/bin"}
    assert sorted(production_variables(environ)) == [
        "HWLEDGER_DATABASE_URL", "HWLEDGER_KAFKA_BOOTSTRAP", "HWLEDGER_KAFKA_OPT_ACKS"]


def test_no_production_setting_is_visible_to_tests() -> None:
    assert production_variables(os.environ) == []


@pytest.mark.slow
def test_a_run_with_production_settings_exported_does_not_see_them() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"{__file__}::test_no_production_setting_is_visible_to_tests"],
        cwd=ROOT, env={**os.environ, **PRODUCTION}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
