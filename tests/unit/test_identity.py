"""Deterministic identities of DESIGN section 3."""

from __future__ import annotations

import uuid

from hwledger.schemas.identity import gpu_hardware_id, system_hardware_id, system_software_id
from hwledger.schemas.units import GiB
from tests import factories as f


def test_same_content_same_ids_and_ids_are_uuid5() -> None:
    a, b = f.snapshot(), f.snapshot()
    assert system_hardware_id(a["system"], a["gpus"]) == system_hardware_id(b["system"], b["gpus"])
    assert system_software_id(a["software"]) == system_software_id(b["software"])
    assert uuid.UUID(gpu_hardware_id(a["gpus"][0])).version == 5


def test_slot_index_is_not_part_of_a_gpu_id() -> None:
    assert gpu_hardware_id(f.gpu(0)) == gpu_hardware_id(f.gpu(7))


def test_gpu_id_depends_on_pci_ids_and_vram() -> None:
    base = gpu_hardware_id(f.gpu(0))
    assert gpu_hardware_id(f.gpu(0, vram_bytes=40 * GiB)) != base
    assert gpu_hardware_id(f.gpu(0, pci_subsystem_id="10de1809")) != base
    assert gpu_hardware_id(f.gpu(0, "h100-pcie")) != base


def test_card_swap_gives_a_new_system_id() -> None:
    before = f.snapshot(gpus=[f.gpu(0, "a100-pcie"), f.gpu(1, "a100-pcie")])
    after = f.snapshot(gpus=[f.gpu(0, "a100-pcie"), f.gpu(1, "l40s")])
    assert (system_hardware_id(before["system"], before["gpus"])
            != system_hardware_id(after["system"], after["gpus"]))


def test_moving_a_card_to_another_slot_or_link_is_a_new_system() -> None:
    gpus = [f.gpu(0, "a100-pcie"), f.gpu(1, "l40s")]
    moved = [f.gpu(1, "a100-pcie"), f.gpu(0, "l40s")]
    degraded = [f.gpu(0, "a100-pcie", actual_interface="PCIe 4.0 x8"), f.gpu(1, "l40s")]
    system = f.snapshot()["system"]
    ids = {system_hardware_id(system, g) for g in (gpus, moved, degraded)}
    assert len(ids) == 3


def test_gpu_order_field_order_and_case_do_not_change_ids() -> None:
    snap = f.snapshot(gpus=[f.gpu(0, "h100-sxm"), f.gpu(1, "mi300x")])
    shuffled_gpus = [dict(reversed(list(g.items()))) for g in reversed(snap["gpus"])]
    shouted_system = {k.upper(): v.upper() if isinstance(v, str) else v
                      for k, v in reversed(list(snap["system"].items()))}
    shouted_system = {k.lower(): v for k, v in shouted_system.items()}
    assert (system_hardware_id(snap["system"], snap["gpus"])
            == system_hardware_id(shouted_system, shuffled_gpus))
    gpu = f.gpu(0)
    assert gpu_hardware_id(gpu) == gpu_hardware_id(
        gpu | {"pci_vendor_id": "0x10DE", "pci_device_id": "2330 "})
    software = snap["software"]
    assert system_software_id(software) == system_software_id(
        {k: v.upper() if isinstance(v, str) else v for k, v in reversed(software.items())})


def test_software_change_gives_a_new_software_id_but_same_hardware() -> None:
    a = f.snapshot()
    b = f.snapshot(software=a["software"] | {"gpu_driver_version": "555.42.02"})
    assert system_software_id(a["software"]) != system_software_id(b["software"])
    assert system_hardware_id(a["system"], a["gpus"]) == system_hardware_id(b["system"], b["gpus"])


def test_non_identity_fields_do_not_change_ids() -> None:
    a = f.snapshot()
    b = f.snapshot(gpus=[g | {"power_limit_w": 350, "name": "renamed"} for g in a["gpus"]],
                   allocatable={"cpu_millicores": 1, "memory_bytes": 1,
                                "ephemeral_storage_bytes": 1})
    assert system_hardware_id(a["system"], a["gpus"]) == system_hardware_id(b["system"], b["gpus"])


FACTORY_SYSTEM_ID = "307d4c48-a505-56ca-a9fb-4a41a8840ca8"  # the id before optional fields


def test_optional_identity_fields_absent_or_default_keep_existing_ids() -> None:
    snap = f.snapshot()
    assert system_hardware_id(snap["system"], snap["gpus"]) == FACTORY_SYSTEM_ID
    at_default = snap["system"] | {"bar_size_mb": None, "memory_speed_mhz": None}
    assert system_hardware_id(at_default, snap["gpus"]) == FACTORY_SYSTEM_ID
    with_bar = snap["system"] | {"bar_size_mb": 131072}
    assert system_hardware_id(with_bar, snap["gpus"]) != FACTORY_SYSTEM_ID
    with_speed = snap["system"] | {"memory_speed_mhz": 4800}
    assert system_hardware_id(with_speed, snap["gpus"]) not in (
        FACTORY_SYSTEM_ID, system_hardware_id(with_bar, snap["gpus"]))
