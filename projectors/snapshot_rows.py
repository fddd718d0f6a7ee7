"""A snapshot's content rows: the content-addressed gpu_hardware, system_hardware,
system_gpu_link and system_software rows of a HardwareSnapshotted, its slots, allocatable,
storage and power, computed once per distinct content (`snapshot_content`, memoized).

Pure: ids derive from the content (`schemas.identity`), never from the producer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from hwledger.projectors.rows import GpuHardware, SystemGpuLink, SystemHardware, SystemSoftware
from hwledger.schemas import codec, identity, tokens, validation
from hwledger.schemas.cache import BoundedCache
from hwledger.schemas.events import HardwareSnapshotted
from hwledger.seeds import interface_type_ids


@lru_cache(maxsize=65536)
def _gpu(pci_vendor_id: str, pci_device_id: str, pci_subsystem_id: str | None, vram_bytes: int,
         name: str, interface: str) -> GpuHardware:
    gpu = {"pci_vendor_id": pci_vendor_id, "pci_device_id": pci_device_id,
           "pci_subsystem_id": pci_subsystem_id, "vram_bytes": vram_bytes}
    ident = tokens.identify(name, pci_vendor_id, pci_device_id)
    return GpuHardware(
        identity.gpu_hardware_id(gpu), ident.vendor, ident.model, name,
        tokens.normalize_pci_id(pci_vendor_id), tokens.normalize_pci_id(pci_device_id),
        tokens.normalize_pci_id(pci_subsystem_id, 8), vram_bytes, interface)


def gpu_row(gpu: Mapping[str, Any]) -> GpuHardware:
    """The gpu_hardware row of one installed GPU (id, vendor and model tokens, PCI ids...)."""
    return _gpu(gpu["pci_vendor_id"], gpu["pci_device_id"], gpu.get("pci_subsystem_id"),
                int(gpu["vram_bytes"]), gpu["name"], gpu["interface"])


SYSTEM_ID_FIELDS = ("cpu_model", "cpu_threads", "ram_bytes", "architecture", "motherboard",
                    *identity.OPTIONAL_SYSTEM_IDENTITY)


@lru_cache(maxsize=65536)
def _system_id(system: tuple[Any, ...], config: tuple[tuple[Any, ...], ...]) -> str:
    return identity.system_hardware_id(
        dict(zip(SYSTEM_ID_FIELDS, system, strict=True)),
        [{"slot_index": c[0], "pci_vendor_id": c[1], "pci_device_id": c[2],
          "pci_subsystem_id": c[3], "vram_bytes": c[4], "slot_native_interface": c[5],
          "actual_interface": c[6]} for c in config])


def system_row(system: Mapping[str, Any],
               gpus: Sequence[Mapping[str, Any]]) -> SystemHardware:
    """The system_hardware row: host spec plus GPU configuration identity, then the optional
    host identity inputs (null when not reported)."""
    optional = tuple(system.get(k) for k in identity.OPTIONAL_SYSTEM_IDENTITY)
    key = (system["cpu_model"], int(system["cpu_threads"]), int(system["ram_bytes"]),
           system["architecture"], system.get("motherboard"), *optional)
    config = tuple(sorted(
        (int(g["slot_index"]), g["pci_vendor_id"], g["pci_device_id"], g.get("pci_subsystem_id"),
         int(g["vram_bytes"]), g.get("slot_native_interface"), g.get("actual_interface"))
        for g in gpus))
    return SystemHardware(
        _system_id(key, config), system["cpu_model"], system["cpu_vendor"],
        int(system["cpu_cores"]), int(system["cpu_threads"]), int(system["ram_bytes"]),
        system["architecture"], system.get("motherboard"), len(gpus),
        sum(int(g["vram_bytes"]) for g in gpus), *optional)


@lru_cache(maxsize=16384)
def _software_id(values: tuple[str | None, ...]) -> str:
    return identity.system_software_id(dict(zip(identity.SOFTWARE_FIELDS, values, strict=True)))


def software_row(software: Mapping[str, Any]) -> SystemSoftware:
    values = tuple(software.get(f) for f in identity.SOFTWARE_FIELDS)
    return SystemSoftware._make((_software_id(values), *values))


@dataclass(frozen=True, slots=True)
class SnapshotContent:
    """What a snapshot's content (its fields after the envelope) projects to: its problems, or
    its rows (system, software, GPUs, slot links, allocatable, storage and power JSON). The
    same for every heartbeat of unchanged hardware, so `snapshot_content` computes it once per
    distinct content."""

    problems: tuple[str, ...]
    system: SystemHardware | None = None
    software: SystemSoftware | None = None
    gpus: tuple[GpuHardware, ...] = ()
    links: tuple[SystemGpuLink, ...] = ()
    slots: frozenset[int] = frozenset()
    allocatable: tuple[int, int, int] = (0, 0, 0)
    """cpu_millicores, memory_bytes, ephemeral_storage_bytes (unlimited saturated)."""
    storage: str = "[]"
    power: str = "{}"


_snapshot_contents: BoundedCache[bytes, SnapshotContent] = BoundedCache(
    codec.CONTENT_CACHE_SIZE)


def snapshot_content(event: HardwareSnapshotted) -> SnapshotContent:
    """The content rows of a HardwareSnapshotted, memoized by its encoded content."""
    key = event.content
    found = None if key is None else _snapshot_contents.get(key)
    if found is None:
        found = _snapshot_content(event.fields())
        if key is not None:
            _snapshot_contents.put(key, found)
    return found


def _snapshot_content(data: Mapping[str, Any]) -> SnapshotContent:
    found = validation.content_problems("HardwareSnapshotted", data)
    if found:
        return SnapshotContent(tuple(found))
    gpus = data["gpus"]
    system = system_row(data["system"], gpus)
    gpu_rows = tuple(gpu_row(g) for g in gpus)
    links = interface_type_ids()
    alloc = data["allocatable"]
    power = {str(g["slot_index"]): g["power_limit_w"] for g in gpus
             if g.get("power_limit_w") is not None}
    storage = [{"class": v["class"], "bytes": v["bytes"]} for v in data["storage"]]
    return SnapshotContent(
        (), system, software_row(data["software"]), gpu_rows,
        tuple(SystemGpuLink(system.system_hardware_id, g["slot_index"], row.gpu_hardware_id,
                            links.get(g.get("slot_native_interface") or ""),
                            links.get(g.get("actual_interface") or ""))
              for g, row in zip(gpus, gpu_rows, strict=True)),
        frozenset(g["slot_index"] for g in gpus),
        (validation.allocatable_value(alloc["cpu_millicores"]),
         validation.allocatable_value(alloc["memory_bytes"]),
         validation.allocatable_value(alloc["ephemeral_storage_bytes"])),
        json.dumps(storage, sort_keys=True), json.dumps(power, sort_keys=True))
