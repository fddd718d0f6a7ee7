"""Issue 16: `hwledger export` writes the read model in bakeoff's layout; importing the export
into an empty system gives the same read model and the same files again (apart from
`updated_at`); an export with nothing changed rewrites no file, a changed one keeps its
`created_at`; --provider and --since filter.
All through the real publisher, broker, projector and Postgres."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hwledger.deploy.commands.bakeoff import (
    ExportResult,
    export_directory,
    import_directory,
    read_model,
)
from hwledger.deploy.kafka_admin import ensure_topic
from hwledger.producers.publisher import Publisher
from hwledger.projectors import catch_up
from hwledger.schemas.db import connect
from tests.cli import run
from tests.integration.projector_support import checksums, fresh_schema

pytestmark = pytest.mark.slow

SHARED = Path(__file__).resolve().parents[1] / "data" / "bakeoff"
PROVIDERS = ("bakeoff-lab", "other-lab")
RUN_IDS = ("2026-05-14T09-12-03", "2026-06-02T18-00-00", "h100x8-2026-07-20")
FIRST, SECOND = datetime(2026, 8, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC)


def _import(data: Path, provider_id: str, home: Path, kafka_config: dict[str, Any],
            topic: str) -> None:
    with Publisher(kafka_config, topic, home / "spool") as publisher:
        assert import_directory(data, provider_id, publisher).skipped == []
        assert publisher.flush(30) == 0


def _export(database_url: str, schema: str, out: Path, now: datetime,
            provider_id: str | None = None, since: datetime | None = None) -> ExportResult:
    with connect(database_url, schema) as conn:
        model = read_model(conn, provider_id, since)
    return export_directory(model, out, since, now)


def _files(out: Path) -> dict[str, Any]:
    return {str(p.relative_to(out)): json.loads(p.read_text("utf-8"))
            for p in sorted(out.rglob("*")) if p.is_file()}


def _without_updated_at(files: dict[str, Any]) -> dict[str, Any]:
    return {k: {f: v for f, v in doc.items() if f != "updated_at"} for k, doc in files.items()}


def test_export_round_trips_and_rewrites_nothing_unchanged(
        tmp_path: Path, home: Path, database_url: str, db_schema: str,
        kafka_config: dict[str, Any], topic: str) -> None:
    for provider_id in PROVIDERS:  # two providers with the same run ids
        _import(SHARED, provider_id, home, kafka_config, topic)
    catch_up(database_url, db_schema, kafka_config, topic)
    original = checksums(database_url, db_schema)

    out = tmp_path / "export"
    first = _export(database_url, db_schema, out, FIRST)
    files = _files(out)
    with connect(database_url, db_schema) as conn:
        systems = sorted(str(r[0]) for r in conn.execute(
            "SELECT system_hardware_id FROM system_hardware").fetchall())
        host_identity = conn.execute(
            "SELECT cpu_base_clock_mhz, cpu_peak_clock_mhz, memory_speed_mhz, memory_channels, "
            "memory_interleave_profile, bar_size_mb FROM system_hardware "
            "WHERE cpu_base_clock_mhz IS NOT NULL").fetchall()
    assert host_identity == [(2000, 3800, 4800, 16, None, 131072)]
    layout = sorted([*(f"runs/{r}.json" for r in RUN_IDS),
                     *(f"hardware-snapshot/{s}.json" for s in systems),
                     "seeds/interface_types.json"])
    assert sorted(files) == sorted(f"{p}/{name}" for p in PROVIDERS for name in layout)
    assert (first.written, first.unchanged, first.skipped) == (len(files), 0, [])
    h100 = files["other-lab/runs/h100x8-2026-07-20.json"]
    assert h100["provider_id"] == "other-lab" and h100["run_status"] == "complete"
    assert len(h100["hardware"]["gpus"]) == 8 and h100["resources"]["gpu_slots"] == list(
        range(8))
    assert h100["hardware"]["gpus"][7]["power_limit_w"] == 700
    assert h100["metrics"]["measured_tflops"] == 611.8
    assert (h100["hardware"]["cpu_base_clock_mhz"], h100["hardware"]["memory_channels"],
            h100["hardware"]["bios_notes"]) == (2000, 16, {"bar_size_mb": 131072})
    assert (h100["created_at"], h100["updated_at"]) == ("2026-07-20T03:00:00Z",
                                                         "2026-08-01T00:00:00Z")
    assert all({"schema_version", "created_at", "updated_at"} <= set(d) for d in files.values())
    text = (out / "bakeoff-lab/runs/h100x8-2026-07-20.json").read_text("utf-8")
    assert text == json.dumps(h100 | {"provider_id": "bakeoff-lab"}, sort_keys=True,
                              indent=2) + "\n"
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temp file left

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    again = _export(database_url, db_schema, out, SECOND)
    assert (again.written, again.unchanged) == (0, len(files))
    assert _files(out) == files and {p: p.stat().st_mtime_ns for p in stamps} == stamps

    seed = "bakeoff-lab/seeds/interface_types.json"
    (out / seed).write_text(json.dumps({**files[seed], "rows": [],
                                        "created_at": "2020-01-01T00:00:00Z"}))
    changed = _export(database_url, db_schema, out, SECOND)
    assert (changed.written, changed.unchanged) == (1, len(files) - 1)
    assert _files(out)[seed] == {**files[seed], "created_at": "2020-01-01T00:00:00Z",
                                 "updated_at": "2026-09-01T00:00:00Z"}

    with fresh_schema(database_url) as empty:
        other_topic = f"hwledger.test.{uuid.uuid4().hex[:12]}"
        ensure_topic(kafka_config, other_topic, 3)
        for provider_id in PROVIDERS:
            _import(out / provider_id, provider_id, home, kafka_config, other_topic)
        catch_up(database_url, empty, kafka_config, other_topic)
        assert checksums(database_url, empty) == original
        back = tmp_path / "back"
        _export(database_url, empty, back, SECOND)
        exported_back = _files(back)
    assert _without_updated_at(exported_back) == _without_updated_at(files)
    assert {d["updated_at"] for d in exported_back.values()} == {"2026-09-01T00:00:00Z"}


def test_export_filters_by_provider_and_since(
        tmp_path: Path, home: Path, database_url: str, db_schema: str,
        kafka_config: dict[str, Any], topic: str) -> None:
    for provider_id in PROVIDERS:
        _import(SHARED, provider_id, home, kafka_config, topic)
    catch_up(database_url, db_schema, kafka_config, topic)
    env = {"HWLEDGER_DATABASE_URL": database_url, "HWLEDGER_DB_SCHEMA": db_schema}

    one = tmp_path / "one"
    result = run(["export", str(one), "--provider", "other-lab", "--since",
                  "2026-06-02T19:00:00Z"], home, **env)
    assert result.returncode == 0, result.stderr
    assert "exported 2 finished run(s) of 1 provider(s)" in result.stdout
    runs = sorted(p.name for p in (one / "other-lab" / "runs").iterdir())
    assert runs == ["2026-06-02T18-00-00.json", "h100x8-2026-07-20.json"]
    assert [p.name for p in one.iterdir()] == ["other-lab"]
    assert len(list((one / "other-lab" / "hardware-snapshot").iterdir())) == 2
