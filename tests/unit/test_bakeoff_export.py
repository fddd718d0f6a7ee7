"""The pure read-model -> bakeoff mapping of `hwledger export`: file names, audit fields, run
and hardware documents that import back to the same events, the per-provider layout."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hwledger.producers.bakeoff import run_events
from hwledger.producers.bakeoff_export import (
    ExportError,
    ReadModel,
    audited,
    file_name,
    planned_files,
    render,
    run_document,
)
from hwledger.schemas.events import EventData
from tests.cli import one_line_error, run

RUNS = Path(__file__).resolve().parents[1] / "data" / "bakeoff" / "runs"
NOW = datetime(2026, 9, 1, 12, 0, 0, 500, tzinfo=UTC)


def _events(name: str, provider_id: str = "p") -> list[EventData]:
    return run_events(json.loads((RUNS / name).read_text("utf-8")), provider_id)


def _rows(events: list[EventData]) -> dict[str, Any]:
    """The read-model rows the projector makes of one run's events."""
    snapshot, started, finished = (data for _, data in events)
    system_id = f"sys-{snapshot['node_id']}"
    run = {
        "run_id": started["run_id"], "provider_id": started["provider_id"],
        "node_id": started["node_id"], "status": finished["status"],
        "started_at": started["occurred_at"], "finished_at": finished["occurred_at"],
        "model_ref": started["model_ref"], "task_ref": started["task_ref"],
        **{k: v for k, v in started["resources"].items() if k != "gpu_slots"},
        "gpu_power_limits_w": {str(g["slot_index"]): g["power_limit_w"]
                               for g in snapshot["gpus"] if g["power_limit_w"] is not None},
        "system_hardware_id": system_id, "system_software_id": "soft",
        **{k: v for k, v in finished.items() if k not in (
            "event_id", "occurred_at", "producer", "run_id", "provider_id", "status",
            "error_message")},
    }
    return {"run": run, "system": {**snapshot["system"], "system_hardware_id": system_id},
            "gpus": [{**g, "system_hardware_id": system_id} for g in snapshot["gpus"]],
            "software": {**snapshot["software"], "system_software_id": "soft"},
            "gpu_slots": started["resources"]["gpu_slots"]}


def _reimported(rows: dict[str, Any], provider_id: str = "p") -> list[EventData]:
    exported = run_document(rows["run"], rows["system"], rows["gpus"], rows["software"],
                            rows["gpu_slots"])
    return run_events(json.loads(render(exported)), provider_id)


@pytest.mark.parametrize("name", sorted(p.name for p in RUNS.glob("*.json")))
def test_an_exported_run_imports_back_to_the_same_events(name: str) -> None:
    events = _events(name)
    assert _reimported(_rows(events)) == events


def test_exact_times_status_slots_and_resources_survive_what_bakeoff_cannot_say() -> None:
    rows = _rows(_events("h100x8-2026-07-20.json"))
    started = rows["run"]["started_at"] + timedelta(microseconds=250)
    rows["run"].update(status="cancelled", started_at=started, cpu_millicores=1500,
                       task_ref="task-7")
    rows["gpu_slots"] = [2, 3]
    _, run, finish = (data for _, data in _reimported(rows))
    assert (finish["status"], run["occurred_at"], run["task_ref"]) == (
        "cancelled", started, "task-7")
    assert run["resources"]["gpu_slots"] == [2, 3]
    assert run["resources"]["cpu_millicores"] == 1500
    exported = run_document(rows["run"], rows["system"], rows["gpus"], rows["software"],
                            rows["gpu_slots"])
    assert exported["run_status"] == "failed" and exported["timestamp"] == "2026-07-20T03-00-00"
    assert exported["started_at"] == "2026-07-20T03:00:00.000250Z"
    gpu = exported["hardware"]["gpus"][0]
    assert (gpu["pci_subsystem_device_id"], gpu["pci_subsystem_vendor_id"]) == ("0x16c1",
                                                                               "0x10de")
    assert gpu["vram_mb"] == 81559 and isinstance(gpu["vram_mb"], int)


def test_host_identity_inputs_are_exported_with_bar_size_under_bios_notes() -> None:
    rows = _rows(_events("h100x8-2026-07-20.json"))
    hardware = run_document(rows["run"], rows["system"], rows["gpus"], rows["software"],
                            rows["gpu_slots"])["hardware"]
    assert (hardware["cpu_base_clock_mhz"], hardware["cpu_peak_clock_mhz"],
            hardware["memory_speed_mhz"], hardware["memory_channels"],
            hardware["memory_interleave_profile"], hardware["bios_notes"]) == (
        2000, 3800, 4800, 16, None, {"bar_size_mb": 131072})


@pytest.mark.parametrize(("key", "name"), [
    ("2026-05-14T09-12-03", "2026-05-14T09-12-03.json"),
    ("a/b", "a%2Fb.json"),
    ("..", "%2E..json"),
    ("50%", "50%25.json"),
    ("naïve run", "na%C3%AFve%20run.json"),
])
def test_file_names_escape_what_a_file_system_cannot_hold(key: str, name: str) -> None:
    assert file_name(key) == name


def test_a_key_too_long_for_a_file_name_is_refused() -> None:
    with pytest.raises(ExportError, match="longer than 255 characters"):
        file_name("/" * 100)


def test_audit_fields_keep_created_at_and_skip_unchanged_content() -> None:
    created = datetime(2026, 5, 14, 9, 12, 3, 999, tzinfo=UTC)
    fresh = audited({"a": 1}, None, created, NOW)
    assert fresh == {"a": 1, "created_at": "2026-05-14T09:12:03Z",
                     "updated_at": "2026-09-01T12:00:00Z"}
    assert audited({"a": 1}, fresh, created, NOW + timedelta(days=1)) is None
    later = NOW + timedelta(days=1)
    kept = {**fresh, "created_at": "2020-01-01T00:00:00Z"}
    assert audited({"a": 2}, kept, created, later) == {
        "a": 2, "created_at": "2020-01-01T00:00:00Z", "updated_at": "2026-09-02T12:00:00Z"}
    assert audited({"a": 1}, ["not", "a", "record"], created, NOW) == fresh


def _model(*providers: str, runs: bool = True) -> ReadModel:
    events = {p: _rows(_events("2026-05-14T09-12-03.json", p)) for p in providers}
    start = next(iter(events.values()))["run"]["started_at"]
    return ReadModel(
        runs=[e["run"] for e in events.values()] if runs else [],
        gpu_usage=[{"provider_id": p, "run_id": e["run"]["run_id"], "slot_index": 0}
                   for p, e in events.items()],
        systems=[{"provider_id": p, "system_hardware_id": e["system"]["system_hardware_id"],
                  "first_seen_at": start, "last_seen_at": start} for p, e in events.items()],
        system_hardware=[next(iter(events.values()))["system"]],
        gpu_links=next(iter(events.values()))["gpus"],
        software=[next(iter(events.values()))["software"]],
        interface_types=[{"interface_type_id": 2, "name": "SXM5"},
                         {"interface_type_id": 1, "name": "PCIe 4.0 x16"}],
        gpu_specs=[RTX4090_SPEC], gpu_tflops=[RTX4090_FP16], compute_formats=["fp16", "fp4"])


RTX4090_SOURCE = {"source": "nvidia-ada-whitepaper", "source_kind": "vendor",
                  "source_title": "Ada whitepaper", "source_url": "https://images.nvidia.com/"}
RTX4090_SPEC = {"pci_vendor_id": "10de", "pci_device_id": "2684", "architecture": "Ada Lovelace",
                "vram_type": "GDDR6X", "memory_bus_width_bits": 384,
                "memory_data_rate_gbps": 21.0, "memory_bandwidth_gbps": 1008.0,
                "boost_clock_mhz": 2520, "tdp_w": 450, "note": None, **RTX4090_SOURCE}
RTX4090_FP16 = {"pci_vendor_id": "10de", "pci_device_id": "2684", "compute_format": "fp16",
                "dense_tflops": 165.2, "sparse_tflops": 330.4, **RTX4090_SOURCE}


def test_exported_gpus_carry_their_catalog_spec_and_still_import_back() -> None:
    planned, _ = planned_files(_model("lab"), None)
    files = {p.path.parent.name: p.content for p in planned}
    for document in (files["runs"]["hardware"], files["hardware-snapshot"]):
        spec = document["gpus"][0]["spec"]
        assert (spec["architecture"], spec["memory_bandwidth_gbps"], spec["tdp_w"]) == (
            "Ada Lovelace", 1008.0, 450)
        assert spec["peak_tflops"] == {"fp16": {"dense": 165.2, "sparse": 330.4,
                                                "source": "nvidia-ada-whitepaper"},
                                       "fp4": None}
        assert spec["sources"]["nvidia-ada-whitepaper"]["kind"] == "vendor"
    events = _events("2026-05-14T09-12-03.json", "lab")
    assert run_events(json.loads(render(files["runs"])), "lab") == events


def test_one_data_directory_per_provider_keeps_shared_run_ids_apart() -> None:
    planned, skipped = planned_files(_model("lab", "lab/2"), None)
    system = _model("lab").systems[0]["system_hardware_id"]
    assert skipped == []
    assert sorted(str(p.path) for p in planned) == sorted(
        f"{folder}/{name}" for folder in ("lab", "lab%2F2")
        for name in ("runs/2026-05-14T09-12-03.json", f"hardware-snapshot/{system}.json",
                     "seeds/interface_types.json"))
    seed = next(p for p in planned if p.path.name == "interface_types.json").content
    assert [r["name"] for r in seed["rows"]] == ["PCIe 4.0 x16", "SXM5"]


def test_since_leaves_out_systems_no_exported_run_or_later_snapshot_names() -> None:
    later = datetime(2027, 1, 1, tzinfo=UTC)
    with_run, _ = planned_files(_model("lab"), later)
    without, _ = planned_files(_model("lab", runs=False), later)
    assert sorted(p.path.parent.name for p in with_run) == ["hardware-snapshot", "runs",
                                                            "seeds"]
    assert [p.path.parent.name for p in without] == ["seeds"]


@pytest.mark.slow
def test_export_refuses_a_bad_since_or_a_file_for_dir_in_one_line(tmp_path: Path) -> None:
    bad_since = run(["export", str(tmp_path / "out"), "--since", "last tuesday"], tmp_path)
    a_file = tmp_path / "file"
    a_file.write_text("")
    not_a_dir = run(["export", str(a_file)], tmp_path)
    assert (bad_since.returncode, not_a_dir.returncode) == (1, 1)
    assert one_line_error(bad_since) == ("hwledger: error: --since 'last tuesday' is not an "
                                         "ISO-8601 time")
    assert one_line_error(not_a_dir) == f"hwledger: error: {a_file} exists and is not a directory"
    assert not (tmp_path / "out").exists()
