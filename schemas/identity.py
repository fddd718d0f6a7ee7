"""Deterministic, content-addressed identities of the normalized hardware tables.

Each id is a UUIDv5 over canonical JSON (sorted keys, no whitespace, strings stripped and
lowercased, PCI ids without `0x`), with one fixed namespace per table. Identical machines share
rows; the projector derives ids from event content and never trusts ids a producer sends.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from hwledger.schemas.tokens import normalize_pci_id

GPU_HARDWARE_NS = uuid.UUID("6f2d3c1e-3b0a-5f1e-9a59-0c6b5f2e7a01")
SYSTEM_HARDWARE_NS = uuid.UUID("6f2d3c1e-3b0a-5f1e-9a59-0c6b5f2e7a02")
SYSTEM_SOFTWARE_NS = uuid.UUID("6f2d3c1e-3b0a-5f1e-9a59-0c6b5f2e7a03")

# Identity inputs added after v1 ids existed: part of the canonical JSON only when present and
# not at their default, so every id derived before them stays the same (bakeoff #25).
OPTIONAL_SYSTEM_IDENTITY: dict[str, Any] = {
    "cpu_base_clock_mhz": None, "cpu_peak_clock_mhz": None, "memory_speed_mhz": None,
    "memory_channels": None, "memory_interleave_profile": None, "bar_size_mb": None,
}

SOFTWARE_FIELDS = ("os", "kernel_version", "python_version", "gpu_driver_version",
                   "cuda_version", "rocm_version", "runner_version")


def _normalize(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().lower()
    if isinstance(value, Mapping):
        return {str(k).lower(): _normalize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalize(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """Canonical JSON: normalized values, sorted keys, compact separators."""
    return json.dumps(_normalize(value), sort_keys=True, separators=(",", ":"))


def _uuid5(namespace: uuid.UUID, value: Any) -> str:
    return str(uuid.uuid5(namespace, canonical_json(value)))


def gpu_hardware_id(gpu: Mapping[str, Any]) -> str:
    """Identity of a GPU model variant: PCI vendor/device/subsystem ids and VRAM bytes."""
    return _uuid5(GPU_HARDWARE_NS, {
        "pci_vendor_id": normalize_pci_id(gpu["pci_vendor_id"]),
        "pci_device_id": normalize_pci_id(gpu["pci_device_id"]),
        "pci_subsystem_id": normalize_pci_id(gpu.get("pci_subsystem_id"), 8),
        "vram_bytes": int(gpu["vram_bytes"]),
    })


def gpu_configuration(gpus: Iterable[Mapping[str, Any]]) -> list[list[Any]]:
    """Sorted [(slot_index, gpu_hardware_id, native interface, actual interface)]."""
    return sorted(
        [int(g["slot_index"]), gpu_hardware_id(g), g.get("slot_native_interface"),
         g.get("actual_interface")]
        for g in gpus
    )


def optional_identity(values: Mapping[str, Any], defaults: Mapping[str, Any]
                      ) -> dict[str, Any]:
    """The later-added identity fields of `values` that are present and not at their default."""
    return {k: values[k] for k, default in defaults.items()
            if values.get(k, default) != default}


def system_hardware_id(system: Mapping[str, Any], gpus: Iterable[Mapping[str, Any]]) -> str:
    """Identity of a host spec plus its GPU configuration: a card swap gives a new id."""
    return _uuid5(SYSTEM_HARDWARE_NS, {
        **optional_identity(system, OPTIONAL_SYSTEM_IDENTITY),
        "cpu_model": system["cpu_model"],
        "cpu_threads": int(system["cpu_threads"]),
        "ram_bytes": int(system["ram_bytes"]),
        "architecture": system["architecture"],
        "motherboard": system.get("motherboard"),
        "gpus": gpu_configuration(gpus),
    })


def system_software_id(software: Mapping[str, Any]) -> str:
    """Identity of a software stack: the software fields, absent ones as null."""
    return _uuid5(SYSTEM_SOFTWARE_NS, {f: software.get(f) for f in SOFTWARE_FIELDS})
