"""Issue 16: importing a bakeoff data directory through the real publisher, broker, projector
and query service; a second import changes nothing; a malformed file is skipped."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from hwledger.deploy.commands.bakeoff import import_directory
from hwledger.producers.publisher import Publisher
from hwledger.projectors import catch_up
from hwledger.schemas.db import connect
from tests.factories import at
from tests.integration.projector_support import checksums
from tests.integration.query_support import client

pytestmark = pytest.mark.slow

SHARED = Path(__file__).resolve().parents[1] / "data" / "bakeoff"
RUNS = {"2026-05-14T09-12-03": ("succeeded", "nvidia", "rtx4090"),
        "2026-06-02T18-00-00": ("incomplete", "amd", "8060s"),
        "h100x8-2026-07-20": ("succeeded", "nvidia", "h100")}


def _import(data: Path, home: Path, kafka_config: dict[str, Any], topic: str
            ) -> list[tuple[Path, str]]:
    with Publisher(kafka_config, topic, home / "spool") as publisher:
        result = import_directory(data, "bakeoff-lab", publisher)
        assert publisher.flush(30) == 0
    return result.skipped


def test_import_lands_runs_and_hardware_and_is_idempotent(
        tmp_path: Path, home: Path, database_url: str, db_schema: str,
        kafka_config: dict[str, Any], topic: str) -> None:
    data = tmp_path / "data"
    shutil.copytree(SHARED, data)
    bad = data / "runs" / "broken.json"
    bad.write_text('{"run_id": "broken", "run_status": "complete"}')

    skipped = _import(data, home, kafka_config, topic)
    assert skipped == [(bad, "hardware block is missing")]
    catch_up(database_url, db_schema, kafka_config, topic)
    first = checksums(database_url, db_schema)
    assert first["runs"][0] == 3 and first["system_hardware"][0] == 3

    with connect(database_url, db_schema) as conn:
        hardware = dict(conn.execute(
            "SELECT r.run_id, s.system_hardware_id::text FROM runs r JOIN hardware_snapshots s "
            "ON s.event_id = r.snapshot_event_id").fetchall())
    with client(database_url, db_schema, at(0)) as http:
        for run_id, (status, vendor, model) in RUNS.items():
            run = http.get(f"/v1/runs/{run_id}")
            assert run.status_code == 200, run.text
            assert run.json()["status"] == status
            found = http.get(f"/v1/hardware/{hardware[run_id]}")
            assert found.status_code == 200, found.text
            assert f'"{vendor}"' in found.text and f'"{model}"' in found.text
        h100 = http.get(f"/v1/hardware/{hardware['h100x8-2026-07-20']}").json()
        assert (h100["cpuBaseClockMhz"], h100["memorySpeedMhz"], h100["barSizeMb"]) == (
            2000, 4800, 131072)
        assert http.get("/v1/runs/broken").status_code == 404

    assert _import(data, home, kafka_config, topic) == skipped
    catch_up(database_url, db_schema, kafka_config, topic)
    assert checksums(database_url, db_schema) == first
