"""Impossible-but-schema-valid values are named, plausible events pass."""

from __future__ import annotations

from hwledger.schemas.validation import problems
from tests import factories as f


def test_plausible_events_have_no_problems() -> None:
    snap = f.snapshot()
    started = f.run_started(snap)
    assert problems("HardwareSnapshotted", snap) == []
    assert problems("RunStarted", started) == []
    assert problems("RunFinished", f.run_finished(started)) == []
    assert problems("ProviderRegistered", f.provider_registered()) == []
    assert problems("ProviderAudited", f.provider_audited()) == []


def test_snapshot_problems_are_named() -> None:
    snap = f.snapshot(gpus=[f.gpu(0), f.gpu(0), f.gpu(1, vram_bytes=-1, interface="nvlink",
                                                       actual_interface="PCIe 9.0 x3")])
    snap["system"]["ram_bytes"] = -5
    snap["allocatable"]["memory_bytes"] = -2  # -1 is unlimited
    found = " | ".join(problems("HardwareSnapshotted", snap))
    for expected in ("duplicate slot_index 0", "vram_bytes must be positive",
                     "interface must be one of", "'PCIe 9.0 x3' is not a known interface_type",
                     "system.ram_bytes must not be negative",
                     "allocatable.memory_bytes must not be negative"):
        assert expected in found


def test_negative_host_identity_inputs_are_named() -> None:
    snap = f.host_identity_snapshot()
    assert problems("HardwareSnapshotted", snap) == []
    snap["system"] |= {"bar_size_mb": -1, "cpu_base_clock_mhz": -2000}
    assert problems("HardwareSnapshotted", snap) == [
        "system.cpu_base_clock_mhz must not be negative (got -2000)",
        "system.bar_size_mb must not be negative (got -1)"]


def test_run_and_provider_problems_are_named() -> None:
    started = f.run_started(f.snapshot(), gpu_slots=[1, 1])
    assert problems("RunStarted", started) == ["resources.gpu_slots: duplicate slot 1"]
    finished = f.run_finished(started, energy_wh=-3.0)
    assert problems("RunFinished", finished) == ["energy_wh must not be negative (got -3.0)"]
    registered = f.provider_registered(provider_id=" ")
    registered["attributes"] += registered["attributes"][:1]
    assert problems("ProviderRegistered", registered) == [
        "provider_id must not be empty", "attributes: duplicate key 'region'"]


def test_an_allocatable_of_minus_one_is_unlimited_and_below_it_is_refused() -> None:
    unlimited = f.snapshot(allocatable={"cpu_millicores": -1, "memory_bytes": -1,
                                        "ephemeral_storage_bytes": -1})
    assert problems("HardwareSnapshotted", unlimited) == []
    below = f.snapshot(allocatable={"cpu_millicores": -2, "memory_bytes": 1,
                                    "ephemeral_storage_bytes": 1})
    assert problems("HardwareSnapshotted", below) == [
        "allocatable.cpu_millicores must not be negative (got -2)"]
    asked = f.run_started(f.snapshot(), resources={"cpu_millicores": -1, "memory_bytes": 1,
                                                   "ephemeral_storage_bytes": 1,
                                                   "gpu_slots": []})
    assert problems("RunStarted", asked) == [  # a run holds what it holds: never unlimited
        "resources.cpu_millicores must not be negative (got -1)"]


def test_leased_ips_and_reclamation_windows_are_bounded() -> None:
    assert problems("ProviderRegistered", f.provider_registered(
        leased_ip_capacity=16, reclamation_window=86400)) == []
    assert problems("ProviderRegistered", f.provider_registered(
        leased_ip_capacity=-1, reclamation_window=-60)) == [
        "leased_ip_capacity must not be negative (got -1)",
        "reclamation_window must not be negative (got -60)"]
    assert problems("ProviderRegistered", f.provider_registered(
        leased_ip_capacity=2**24 + 1)) == [
        f"leased_ip_capacity must be at most {2**24} (got {2**24 + 1})"]
    assert problems("RunStarted", f.run_started(f.snapshot(), leased_ips=-1)) == [
        "leased_ips must not be negative (got -1)"]
