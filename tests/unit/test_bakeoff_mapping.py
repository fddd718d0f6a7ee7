"""The pure bakeoff -> event mapping: deterministic ids, GPUs by PCI id or by name, reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hwledger.producers.bakeoff import BakeoffError, run_events, snapshot_events
from hwledger.producers.events import encode_event
from hwledger.schemas.identity import OPTIONAL_SYSTEM_IDENTITY

RUNS = Path(__file__).resolve().parents[1] / "data" / "bakeoff" / "runs"


def _doc(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((RUNS / name).read_text("utf-8"))
    return doc


def test_same_file_same_events_and_all_encode() -> None:
    doc = _doc("h100x8-2026-07-20.json")
    first, second = run_events(doc, "p"), run_events(doc, "p")
    assert first == second
    assert [kind for kind, _ in first] == ["HardwareSnapshotted", "RunStarted", "RunFinished"]
    assert first[1][1]["snapshot_event_id"] == first[0][1]["event_id"]
    assert first[0][1]["event_id"] != run_events(doc, "other")[0][1]["event_id"]
    for kind, data in first:
        encode_event(kind, data)


def test_rich_block_uses_pci_ids_links_and_every_gpu() -> None:
    snapshot = run_events(_doc("h100x8-2026-07-20.json"), "p")[0][1]
    assert [g["slot_index"] for g in snapshot["gpus"]] == list(range(8))
    gpu = snapshot["gpus"][0]
    assert (gpu["model"], gpu["pci_device_id"], gpu["pci_subsystem_id"]) == (
        "h100", "2330", "16c110de")
    assert gpu["actual_interface"] == "SXM5" and gpu["interface"] == "sxm"
    assert snapshot["software"]["cuda_version"] == "12.4"


def test_host_identity_inputs_map_and_bar_size_comes_from_bios_notes() -> None:
    system = run_events(_doc("h100x8-2026-07-20.json"), "p")[0][1]["system"]
    assert {k: system[k] for k in OPTIONAL_SYSTEM_IDENTITY} == {
        "cpu_base_clock_mhz": 2000, "cpu_peak_clock_mhz": 3800, "memory_speed_mhz": 4800,
        "memory_channels": 16, "memory_interleave_profile": None, "bar_size_mb": 131072}
    thin = run_events(_doc("2026-05-14T09-12-03.json"), "p")[0][1]["system"]
    assert {k: thin[k] for k in OPTIONAL_SYSTEM_IDENTITY} == dict.fromkeys(
        OPTIONAL_SYSTEM_IDENTITY)


@pytest.mark.parametrize(("change", "reason"), [
    ({"memory_speed_mhz": "fast"}, "hardware.memory_speed_mhz is not a number >= 0"),
    ({"bios_notes": {"bar_size_mb": -1}}, "hardware.bios_notes.bar_size_mb is not a number"),
    ({"memory_interleave_profile": 4}, "memory_interleave_profile is not a string"),
])
def test_unmappable_host_identity_inputs_say_why(change: dict[str, Any], reason: str) -> None:
    doc = _doc("h100x8-2026-07-20.json")
    with pytest.raises(BakeoffError, match=reason):
        run_events(doc | {"hardware": doc["hardware"] | change}, "p")


def test_thin_block_identifies_gpus_by_name() -> None:
    nvidia = run_events(_doc("2026-05-14T09-12-03.json"), "p")
    gpu = nvidia[0][1]["gpus"][0]
    assert (gpu["vendor"], gpu["model"], gpu["pci_device_id"]) == ("nvidia", "rtx4090", "2684")
    assert nvidia[2][1]["tokens_per_second"] == 58.4
    apu = run_events(_doc("2026-06-02T18-00-00.json"), "p")
    assert apu[0][1]["gpus"][0]["pci_vendor_id"] == "1002"
    assert apu[0][1]["software"]["gpu_driver_version"] is None
    assert apu[2][1]["status"] == "incomplete"


@pytest.mark.parametrize(("change", "reason"), [
    ({"run_status": "exploded"}, "run_status 'exploded' is not one of"),
    ({"run_id": None}, "run_id is missing"),
    ({"timestamp": "yesterday"}, "timestamp 'yesterday' is not an ISO-8601 time"),
])
def test_unmappable_files_say_why(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(BakeoffError, match=reason):
        run_events(_doc("2026-05-14T09-12-03.json") | change, "p")


def test_hardware_snapshot_file_maps_to_one_snapshot() -> None:
    hardware = _doc("h100x8-2026-07-20.json")["hardware"] | {"created_at": "2026-07-20T05:12:00Z"}
    events = snapshot_events(hardware, "p", "abc")
    assert [kind for kind, _ in events] == ["HardwareSnapshotted"]
    assert len(events[0][1]["gpus"]) == 8
