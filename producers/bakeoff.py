"""bakeoff run files -> hwledger events: the pure mapping behind `hwledger import`.

A bakeoff run file (`runs/<run_id>.json`, docs/bakeoff.md) embeds its hardware block, in the
thin shape (first GPU only, no PCI ids) or the fuller shape (`gpus[]` with PCI ids and links).
One file maps to HardwareSnapshotted, RunStarted and RunFinished. Every event id is a UUIDv5
over the provider and run id, so importing the same file twice publishes the same events and
the projector's dedup makes the second import change nothing. A file that cannot be mapped
raises BakeoffError with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hwledger.producers.events import producer_info
from hwledger.schemas import identity
from hwledger.schemas.events import EventData
from hwledger.schemas.tokens import PCI_VENDORS, identify, normalize_pci_id, vendor_token
from hwledger.schemas.units import GiB, MiB
from hwledger.seeds import gpu_catalog, interface_type_ids

IMPORT_NS = uuid.UUID("6f2d3c1e-3b0a-5f1e-9a59-0c6b5f2e7b01")
UNKNOWN = "unknown"
UNKNOWN_PCI_DEVICE = "0000"
DEFAULT_ARCHITECTURE = "amd64"
STATUSES = {"complete": "succeeded", "incomplete": "incomplete", "failed": "failed"}


class BakeoffError(ValueError):
    """A bakeoff file that cannot be mapped; the message says why."""


def _event_id(provider_id: str, run_id: str, kind: str) -> str:
    return str(uuid.uuid5(IMPORT_NS, f"{kind}\n{provider_id}\n{run_id}"))


def parse_time(value: Any, field: str) -> datetime:
    """bakeoff times: `YYYY-MM-DDTHH:MM:SSZ`, or a run timestamp `YYYY-MM-DDTHH-MM-SS`."""
    if not isinstance(value, str):
        raise BakeoffError(f"{field} is missing or not a string")
    text = value.removesuffix("Z")
    date, sep, clock = text.partition("T")
    try:
        parsed = datetime.fromisoformat(f"{date}T{clock.replace('-', ':')}" if sep else text)
    except ValueError:
        raise BakeoffError(f"{field} {value!r} is not an ISO-8601 time") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _link(name: Any) -> str | None:
    """A bakeoff interface description as hwledger's interface_type name (case-insensitive);
    None when hwledger has no such type."""
    if not isinstance(name, str):
        return None
    known = {k.lower(): k for k in interface_type_ids()}
    return known.get(name.strip().lower())


def _by_name(name: str) -> tuple[str, str]:
    """(pci_vendor_id, pci_device_id) of a GPU known only by name: the catalog entry of that
    name, else the vendor's PCI id from name rules and device `0000`."""
    for entry in gpu_catalog().values():
        if entry.name.lower() == name.strip().lower():
            return entry.pci_vendor_id, entry.pci_device_id
    vendor_ids = {v: k for k, v in PCI_VENDORS.items()}
    return vendor_ids.get(vendor_token(name), "0000"), UNKNOWN_PCI_DEVICE


def _gpu(block: Mapping[str, Any], slot: int) -> dict[str, Any]:
    name = block.get("gpu_model")
    vram_mb = block.get("vram_mb")
    if not isinstance(name, str) or not name.strip():
        raise BakeoffError(f"GPU in slot {slot} has no gpu_model")
    if not isinstance(vram_mb, int | float) or vram_mb <= 0:
        raise BakeoffError(f"GPU in slot {slot} has no positive vram_mb")
    if block.get("pci_vendor_id") and block.get("pci_device_id"):
        vendor_id = normalize_pci_id(str(block["pci_vendor_id"])) or ""
        device_id = normalize_pci_id(str(block["pci_device_id"])) or ""
    else:
        vendor_id, device_id = _by_name(name)
    sub_vendor, sub_device = block.get("pci_subsystem_vendor_id"), block.get(
        "pci_subsystem_device_id")
    subsystem = (f"{normalize_pci_id(str(sub_device))}{normalize_pci_id(str(sub_vendor))}"
                 if sub_vendor and sub_device else None)
    ident = identify(name, vendor_id, device_id)
    entry = gpu_catalog().get((vendor_id, device_id))
    native = _link(block.get("slot_native_interface"))
    power = block.get("power_limit_w")
    return {
        "slot_index": slot, "vendor": ident.vendor, "model": ident.model, "name": name,
        "pci_vendor_id": vendor_id, "pci_device_id": device_id, "pci_subsystem_id": subsystem,
        "vram_bytes": int(vram_mb * MiB),
        "interface": entry.interface if entry else "sxm" if native == "SXM5" else "pcie",
        "slot_native_interface": native, "actual_interface": _link(block.get("actual_interface")),
        "power_limit_w": int(power) if isinstance(power, int | float) else None,
    }


def _gpus(hardware: Mapping[str, Any]) -> list[dict[str, Any]]:
    listed = hardware.get("gpus")
    if isinstance(listed, list):
        if not all(isinstance(g, Mapping) and isinstance(g.get("slot_index"), int)
                   for g in listed):
            raise BakeoffError("every gpus[] entry needs an integer slot_index")
        return [_gpu(g, g["slot_index"]) for g in listed]
    return [_gpu(hardware, 0)] if hardware.get("gpu_model") else []


def _int(hardware: Mapping[str, Any], field: str) -> int:
    value = hardware.get(field)
    if not isinstance(value, int | float) or value <= 0:
        raise BakeoffError(f"hardware.{field} is missing or not positive")
    return int(value)


def _optional_int(block: Mapping[str, Any], field: str, where: str) -> int | None:
    value = block.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BakeoffError(f"{where}{field} is not a number >= 0")
    return int(value)


def _host_identity(hardware: Mapping[str, Any]) -> dict[str, Any]:
    """bakeoff's optional host identity inputs (OPTIONAL_SYSTEM_IDENTITY): top-level fields of
    the hardware block, but `bar_size_mb` under `bios_notes`; absent ones are None."""
    notes = hardware.get("bios_notes")
    profile = hardware.get("memory_interleave_profile")
    if profile is not None and not isinstance(profile, str):
        raise BakeoffError("hardware.memory_interleave_profile is not a string")
    return {**{f: _optional_int(hardware, f, "hardware.") for f in (
                "cpu_base_clock_mhz", "cpu_peak_clock_mhz", "memory_speed_mhz",
                "memory_channels")},
            "memory_interleave_profile": profile,
            "bar_size_mb": _optional_int(notes, "bar_size_mb", "hardware.bios_notes.")
            if isinstance(notes, Mapping) else None}


def _system(hardware: Mapping[str, Any]) -> dict[str, Any]:
    cpu_model = hardware.get("cpu_model")
    if not isinstance(cpu_model, str) or not cpu_model.strip():
        raise BakeoffError("hardware.cpu_model is missing")
    return {"cpu_model": cpu_model, "cpu_vendor": vendor_token(cpu_model),
            "cpu_cores": _int(hardware, "cpu_cores"),
            "cpu_threads": _int(hardware, "cpu_threads"),
            "ram_bytes": round(float(hardware.get("ram_gb") or 0) * GiB),
            "architecture": hardware.get("architecture") or DEFAULT_ARCHITECTURE,
            "motherboard": hardware.get("motherboard"), **_host_identity(hardware)}


def _software(hardware: Mapping[str, Any]) -> dict[str, Any]:
    def text(*names: str) -> str | None:
        for name in names:
            if isinstance(hardware.get(name), str) and hardware[name].strip():
                return str(hardware[name])
        return None

    return {"os": text("os", "os_name") or UNKNOWN,
            "kernel_version": text("kernel_version", "os_version") or UNKNOWN,
            "python_version": text("python_version") or UNKNOWN,
            "gpu_driver_version": text("gpu_driver_version", "driver_version"),
            "cuda_version": text("cuda_version"), "rocm_version": text("rocm_version"),
            "runner_version": text("runner_version")}


def _metrics(doc: Mapping[str, Any], hardware: Mapping[str, Any]) -> dict[str, Any]:
    records = [r for r in doc.get("records") or [] if isinstance(r, Mapping)]

    def total(field: str) -> float | None:
        values = [float(r[field]) for r in records if isinstance(r.get(field), int | float)]
        return sum(values) if values else None

    def mean(field: str) -> float | None:
        values = [float(r[field]) for r in records if isinstance(r.get(field), int | float)]
        return sum(values) / len(values) if values else None

    peaks = [int(r["peak_vram_mb"]) for r in records if isinstance(r.get("peak_vram_mb"), int)]
    peak_mb = hardware.get("peak_vram_mb") or (max(peaks) if peaks else None)
    power = hardware.get("power_limit_w")
    tflops = hardware.get("measured_tflops")
    return {"wall_clock_seconds": total("wall_clock_s"),
            "seconds_to_first_token": mean("ttft_s"),
            "tokens_per_second": mean("tokens_per_s"),
            "peak_vram_bytes": int(peak_mb) * MiB if peak_mb else None,
            "power_limit_w": int(power) if isinstance(power, int | float) else None,
            "measured_tflops": float(tflops) if isinstance(tflops, int | float) else None,
            "gpu_sm_utilization_pct": None, "energy_wh": total("energy_wh"),
            "compute_format": None}


def _exported(derived: dict[str, Any], doc: Mapping[str, Any], key: str) -> dict[str, Any]:
    """`derived` with the values a hwledger-exported file states under `key` (exact, where
    the bakeoff fields lose detail)."""
    stated = doc.get(key)
    if not isinstance(stated, Mapping):
        return derived
    return {**derived, **{k: stated[k] for k in derived if k in stated}}


def _snapshot(hardware: Mapping[str, Any], provider_id: str, key: str,
              occurred_at: datetime) -> dict[str, Any]:
    system, gpus = _system(hardware), _gpus(hardware)
    return {
        "event_id": _event_id(provider_id, key, "HardwareSnapshotted"),
        "occurred_at": occurred_at, "producer": producer_info(), "provider_id": provider_id,
        "node_id": f"bakeoff-{identity.system_hardware_id(system, gpus)}", "system": system,
        "software": _software(hardware), "gpus": gpus,
        "allocatable": {"cpu_millicores": system["cpu_threads"] * 1000,
                        "memory_bytes": system["ram_bytes"], "ephemeral_storage_bytes": 0},
        "storage": [],
    }


def system_of(snapshot: Mapping[str, Any]) -> str:
    """The system_hardware_id a HardwareSnapshotted payload's system and GPUs derive."""
    return identity.system_hardware_id(snapshot["system"], snapshot["gpus"])


def snapshot_events(doc: Any, provider_id: str, hardware_id: str) -> list[EventData]:
    """The HardwareSnapshotted of one `hardware-snapshot/<hardware_id>.json` file."""
    if not isinstance(doc, Mapping):
        raise BakeoffError("not a JSON object")
    occurred_at = parse_time(doc.get("created_at"), "created_at")
    return [("HardwareSnapshotted", _snapshot(doc, provider_id,
                                              f"hardware-snapshot/{hardware_id}",
                                              occurred_at))]


def run_events(doc: Any, provider_id: str) -> list[EventData]:
    """The HardwareSnapshotted, RunStarted and RunFinished one bakeoff run file implies."""
    if not isinstance(doc, Mapping):
        raise BakeoffError("not a JSON object")
    run_id, hardware = doc.get("run_id"), doc.get("hardware")
    if not isinstance(run_id, str) or not run_id.strip():
        raise BakeoffError("run_id is missing")
    if not isinstance(hardware, Mapping):
        raise BakeoffError("hardware block is missing")
    status = (doc["status"] if isinstance(doc.get("status"), str)
              else STATUSES.get(str(doc.get("run_status"))))
    if status is None:
        raise BakeoffError(f"run_status {doc.get('run_status')!r} is not one of "
                           f"{', '.join(STATUSES)}")
    started = parse_time(doc.get("started_at") or doc.get("timestamp")
                         or doc.get("created_at"), "timestamp")
    finished = max(started, parse_time(doc.get("finished_at") or doc.get("updated_at")
                                       or doc.get("created_at"), "updated_at"))
    snapshot = _snapshot(hardware, provider_id, run_id, started)
    snapshot_id, node_id, system = snapshot["event_id"], snapshot["node_id"], snapshot["system"]
    gpus, producer = snapshot["gpus"], snapshot["producer"]
    config = doc.get("config")
    models = config.get("models") if isinstance(config, Mapping) else None
    run = {
        "event_id": _event_id(provider_id, run_id, "RunStarted"), "occurred_at": started,
        "producer": producer, "run_id": run_id, "provider_id": provider_id,
        "node_id": node_id, "snapshot_event_id": snapshot_id,
        "resources": _exported({"cpu_millicores": system["cpu_threads"] * 1000,
                                "memory_bytes": system["ram_bytes"],
                                "ephemeral_storage_bytes": 0,
                                "gpu_slots": sorted(g["slot_index"] for g in gpus)},
                               doc, "resources"),
        "task_ref": doc["task_ref"] if isinstance(doc.get("task_ref"), str) else None,
        "model_ref": ",".join(str(m) for m in models) if isinstance(models, list) and models
        else None,
    }
    finish = {
        "event_id": _event_id(provider_id, run_id, "RunFinished"), "occurred_at": finished,
        "producer": producer, "run_id": run_id, "provider_id": provider_id, "status": status,
        **_exported(_metrics(doc, hardware), doc, "metrics"), "error_message": None,
    }
    return [("HardwareSnapshotted", snapshot), ("RunStarted", run), ("RunFinished", finish)]
