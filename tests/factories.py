"""Real-looking event payloads for tests, built from the seed catalog.

Every builder returns the `data` dict of one event as the Avro schema wants it; keyword
arguments override any field. Ids are deterministic when a `seed` string is given.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hwledger.schemas.identity import OPTIONAL_SYSTEM_IDENTITY
from hwledger.schemas.units import GiB
from hwledger.seeds import gpu_catalog

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PRODUCER = {"name": "hwledger-tests", "version": "0.1.0"}

CATALOG_KEYS = {
    "h100-sxm": ("10de", "2330"),
    "h100-pcie": ("10de", "2331"),
    "a100-sxm": ("10de", "20b2"),
    "a100-pcie": ("10de", "20b5"),
    "l40s": ("10de", "26b9"),
    "t4": ("10de", "1eb8"),
    "rtx4090": ("10de", "2684"),
    "mi300x": ("1002", "74a1"),
    "mi250x": ("1002", "740c"),
}


def event_id(seed: str | None = None) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, seed) if seed else uuid.uuid4())


def at(minutes: float) -> datetime:
    """T0 plus `minutes`: event time for deterministic histories."""
    return T0 + timedelta(minutes=minutes)


def gpu(slot_index: int, kind: str = "h100-sxm", **overrides: Any) -> dict[str, Any]:
    entry = gpu_catalog()[CATALOG_KEYS[kind]]
    native = "SXM5" if entry.interface == "sxm" else "PCIe 4.0 x16"
    data: dict[str, Any] = {
        "slot_index": slot_index, "vendor": entry.vendor, "model": entry.model,
        "name": entry.name, "pci_vendor_id": entry.pci_vendor_id,
        "pci_device_id": entry.pci_device_id, "pci_subsystem_id": None,
        "vram_bytes": entry.vram_bytes, "interface": entry.interface,
        "slot_native_interface": native, "actual_interface": native, "power_limit_w": 700,
    }
    return data | overrides


def snapshot(provider_id: str = "provider-a", node_id: str = "node-1", *,
             gpus: list[dict[str, Any]] | None = None, minutes: float = 0,
             seed: str | None = None, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event_id": event_id(seed), "occurred_at": at(minutes), "producer": PRODUCER,
        "provider_id": provider_id, "node_id": node_id,
        "system": {"cpu_model": "AMD EPYC 9654 96-Core Processor", "cpu_vendor": "amd",
                   "cpu_cores": 96, "cpu_threads": 192, "ram_bytes": 1536 * GiB,
                   "architecture": "amd64", "motherboard": "Supermicro H13DSG-O-CPU",
                   **dict.fromkeys(OPTIONAL_SYSTEM_IDENTITY)},
        "software": {"os": "Ubuntu 22.04.4 LTS", "kernel_version": "5.15.0-105-generic",
                     "python_version": "3.11.7", "gpu_driver_version": "550.54.15",
                     "cuda_version": "12.4", "rocm_version": None, "runner_version": "0.1.0"},
        "gpus": [gpu(i) for i in range(8)] if gpus is None else gpus,
        "allocatable": {"cpu_millicores": 190_000, "memory_bytes": 1400 * GiB,
                        "ephemeral_storage_bytes": 3000 * GiB},
        "storage": [{"class": "beta3", "bytes": 7000 * GiB}],
    }
    return data | overrides


HOST_IDENTITY = {"cpu_base_clock_mhz": 2400, "cpu_peak_clock_mhz": 3700,
                 "memory_speed_mhz": 4800, "memory_channels": 12,
                 "memory_interleave_profile": "NPS1", "bar_size_mb": 131072}
"""Every optional host identity input (OPTIONAL_SYSTEM_IDENTITY) set."""


def host_identity_snapshot(**overrides: Any) -> dict[str, Any]:
    """`snapshot` of a host that reports every optional host identity input."""
    data = snapshot(**overrides)
    return data | {"system": data["system"] | HOST_IDENTITY}


def run_started(snapshot_data: dict[str, Any], run_id: str = "run-1", *,
                gpu_slots: list[int] | None = None, minutes: float = 1,
                seed: str | None = None, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event_id": event_id(seed), "occurred_at": at(minutes), "producer": PRODUCER,
        "run_id": run_id, "provider_id": snapshot_data["provider_id"],
        "node_id": snapshot_data["node_id"], "snapshot_event_id": snapshot_data["event_id"],
        "resources": {"cpu_millicores": 16_000, "memory_bytes": 128 * GiB,
                      "ephemeral_storage_bytes": 200 * GiB,
                      "gpu_slots": [0] if gpu_slots is None else gpu_slots},
        "task_ref": "bench/llama3-70b", "model_ref": "meta-llama/Meta-Llama-3-70B",
        "leased_ips": 0,
    }
    return data | overrides


def heartbeat(snapshot_data: dict[str, Any], *, minutes: float = 5, seed: str | None = None,
              **overrides: Any) -> dict[str, Any]:
    """A NodeHeartbeated of the snapshot's node, naming that snapshot."""
    data: dict[str, Any] = {
        "event_id": event_id(seed), "occurred_at": at(minutes),
        "provider_id": snapshot_data["provider_id"], "node_id": snapshot_data["node_id"],
        "snapshot_event_id": snapshot_data["event_id"],
    }
    return data | overrides


def run_finished(started: dict[str, Any], status: str = "succeeded", *, minutes: float = 30,
                 seed: str | None = None, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event_id": event_id(seed), "occurred_at": at(minutes), "producer": PRODUCER,
        "run_id": started["run_id"], "provider_id": started["provider_id"], "status": status,
        "wall_clock_seconds": 1740.5, "seconds_to_first_token": 0.42, "tokens_per_second": 2310.0,
        "peak_vram_bytes": 71 * GiB, "power_limit_w": 700, "measured_tflops": 612.3,
        "gpu_sm_utilization_pct": 87.5, "energy_wh": 310.2, "error_message": None,
        "compute_format": None,
    }
    return data | overrides


def provider_registered(provider_id: str = "provider-a", *, minutes: float = 0,
                        attributes: dict[str, str] | None = None, seed: str | None = None,
                        **overrides: Any) -> dict[str, Any]:
    attrs = {"region": "us-west", "host": "akash"} if attributes is None else attributes
    data: dict[str, Any] = {
        "event_id": event_id(seed), "occurred_at": at(minutes), "producer": PRODUCER,
        "provider_id": provider_id, "host_uri": f"https://{provider_id}.example.net:8443",
        "attributes": [{"key": k, "value": v} for k, v in attrs.items()],
        "leased_ip_capacity": None, "reclamation_window": None,
    }
    return data | overrides


def provider_audited(provider_id: str = "provider-a", auditor: str = "akash1auditor", *,
                     minutes: float = 0, attributes: dict[str, str] | None = None,
                     seed: str | None = None, **overrides: Any) -> dict[str, Any]:
    attrs = {"tier": "community"} if attributes is None else attributes
    data: dict[str, Any] = {
        "event_id": event_id(seed), "occurred_at": at(minutes), "producer": PRODUCER,
        "provider_id": provider_id, "auditor": auditor,
        "attributes": [{"key": k, "value": v} for k, v in attrs.items()], "signature": None,
    }
    return data | overrides
