"""A run id is its provider's name for the run: runs are keyed by (provider_id, run_id) in the
tables, the projection and the HTTP routes, and migration 0004 moves rows stored before."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from hwledger.query import read_models
from hwledger.schemas import migrations as migrations_module
from hwledger.schemas.db import connect, use_schema
from hwledger.schemas.migrations import drop_schema, migrate, migrations
from tests import factories as f
from tests.integration.query_support import client, load

SHARED = "run-shared"
RUNS_PER_PROVIDER = 4  # schemas/sql/0004_runs_per_provider.sql


@pytest.mark.slow
def test_two_providers_with_the_same_run_id_both_project_and_answer(
        database_url: str, db_schema: str, db: psycopg.Connection[Any], topic: str,
        kafka_config: dict[str, Any]) -> None:
    a = f.snapshot("provider-a", gpus=[f.gpu(0), f.gpu(1)])
    b = f.snapshot("provider-b", gpus=[f.gpu(0, "mi300x")])
    started_a = f.run_started(a, SHARED, gpu_slots=[0, 1])
    started_b = f.run_started(b, SHARED, gpu_slots=[0], minutes=2)
    load(database_url, db_schema, kafka_config, topic, [
        ("HardwareSnapshotted", a), ("HardwareSnapshotted", b), ("RunStarted", started_a),
        ("RunStarted", started_b), ("RunFinished", f.run_finished(started_b, "failed"))])
    assert db.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)
    assert db.execute("SELECT provider_id, total_available_gpu FROM provider_inventory "
                      "ORDER BY 1").fetchall() == [("provider-a", 0), ("provider-b", 1)]
    with client(database_url, db_schema, f.at(10)) as http:
        run_a = http.get(f"/v1/providers/provider-a/runs/{SHARED}").json()
        run_b = http.get(f"/v1/providers/provider-b/runs/{SHARED}").json()
        for found in (run_a, run_b):
            read_models.Run.model_validate(found)
        assert (run_a["owner"], run_a["status"], run_a["resources"]["gpuSlots"]) == (
            "provider-a", None, [0, 1])
        assert (run_b["owner"], run_b["status"], run_b["hardware"]["gpus"][0]["model"]) == (
            "provider-b", "failed", "mi300x")
        assert run_b["metrics"]["tokensPerSecond"] == 2310.0
        assert http.get(f"/v1/providers/provider-c/runs/{SHARED}").status_code == 404
        ambiguous = http.get(f"/v1/runs/{SHARED}")
        assert ambiguous.status_code == 409
        assert ambiguous.json()["error"] == "ambiguous_run"
        assert f"/v1/providers/{{owner}}/runs/{SHARED}" in ambiguous.json()["message"]


def test_migration_keys_runs_stored_before_by_provider(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = migrations()
    monkeypatch.setattr(migrations_module, "migrations",
                        lambda: [m for m in shipped if m.version < RUNS_PER_PROVIDER])
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with connect(database_url, None) as conn:
        migrate(conn, schema)
    monkeypatch.undo()
    try:
        with connect(database_url, schema) as conn:
            conn.execute(BEFORE)
            conn.commit()
            applied = [m.version for m in migrate(conn, schema)]
            assert RUNS_PER_PROVIDER in applied
            use_schema(conn, schema)
            assert conn.execute("SELECT provider_id, run_id, slot_index FROM run_gpu_usage"
                                ).fetchall() == [("provider-a", SHARED, 0)]
            assert conn.execute("SELECT provider_id, run_id FROM run_hardware_metrics"
                                ).fetchall() == [("provider-a", SHARED)]
            conn.execute("INSERT INTO runs SELECT %s, 'provider-b', node_id, snapshot_event_id, "
                         "gen_random_uuid(), started_at, 0, 0, 0 FROM runs", (SHARED,))
            conn.commit()
        with client(database_url, schema, f.at(10)) as http:
            run = http.get(f"/v1/providers/provider-a/runs/{SHARED}").json()
            assert (run["status"], run["resources"]["gpuSlots"]) == ("succeeded", [0])
            assert run["metrics"]["energyWh"] == 3.5
            assert http.get(f"/v1/providers/provider-b/runs/{SHARED}").status_code == 200
    finally:
        drop_schema(database_url, schema)


BEFORE = f"""
INSERT INTO system_hardware (system_hardware_id, cpu_model, cpu_vendor, cpu_cores, cpu_threads,
                             ram_bytes, architecture, gpu_count)
    VALUES ('00000000-0000-0000-0000-0000000000a1', 'EPYC', 'amd', 8, 16, 1, 'amd64', 1);
INSERT INTO system_software (system_software_id, os, kernel_version, python_version)
    VALUES ('00000000-0000-0000-0000-0000000000a2', 'Ubuntu 22.04', '5.15', '3.11');
INSERT INTO hardware_snapshots (event_id, provider_id, node_id, system_hardware_id,
        system_software_id, occurred_at, allocatable_cpu_millicores, allocatable_memory_bytes,
        allocatable_ephemeral_storage_bytes)
    VALUES ('00000000-0000-0000-0000-0000000000a3', 'provider-a', 'node-1',
            '00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000a2',
            '2026-11-01T12:00:00Z', 1000, 1, 1);
INSERT INTO runs (run_id, provider_id, node_id, snapshot_event_id, started_event_id, started_at,
                  cpu_millicores, memory_bytes, ephemeral_storage_bytes, finished_event_id,
                  finished_at, status)
    VALUES ('{SHARED}', 'provider-a', 'node-1', '00000000-0000-0000-0000-0000000000a3',
            gen_random_uuid(), '2026-11-01T12:01:00Z', 1, 1, 1, gen_random_uuid(),
            '2026-11-01T12:02:00Z', 'succeeded');
INSERT INTO run_gpu_usage (run_id, slot_index) VALUES ('{SHARED}', 0);
INSERT INTO run_hardware_metrics (run_id, system_hardware_id, system_software_id, energy_wh)
    VALUES ('{SHARED}', '00000000-0000-0000-0000-0000000000a1',
            '00000000-0000-0000-0000-0000000000a2', 3.5);
"""
