"""The wheel installs every folder as hwledger.<folder> and ships the package data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_wheel_contains_subpackages_and_data(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT),
                    "-w", str(tmp_path)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("hwledger-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("schemas", "producers", "projectors", "query", "seeds", "deploy",
                    "deploy/commands", "deploy/bench"):
        assert f"hwledger/{package}/__init__.py" in names
    assert "hwledger/schemas/sql/0001_initial.sql" in names
    assert "hwledger/schemas/avro/HardwareSnapshotted.v1.avsc" in names
    assert {"hwledger/seeds/interface_types.json", "hwledger/seeds/gpu_models.json",
            "hwledger/seeds/demo_fleet.json"} <= names
    assert {"hwledger/query/console/index.html", "hwledger/query/console/console.js",
            "hwledger/query/console/console.css"} <= names
    assert not any(n.startswith(("query/", "schemas/", "tests/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "hwledger = hwledger.deploy.cli:main" in zipfile.ZipFile(wheel).read(
        entry_points).decode()
