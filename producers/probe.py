"""The hardware probe: this host's HardwareSnapshotted payload.

Pure core: `HostFacts` (`host_facts`) + GPUs (`RawGpu`, from NVML and /sys) + `ProbeOptions`
(`probe_options`) -> `build_snapshot(...)`; `fingerprint(...)` says whether two snapshots
describe the same hardware and software. Shell: `node_id` (stable across restarts) and
`Prober`, which reads the host facts and keeps NVML open for cheap re-probes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from hwledger.producers.events import complete, hwledger_version, now
from hwledger.producers.host_facts import HostFacts, read_host_facts, read_text
from hwledger.producers.nvml import (
    NVML_ERRORS,
    Nvml,
    NvmlReport,
    PynvmlBackend,
    RawGpu,
    read_nvml,
    unavailable,
)
from hwledger.producers.probe_options import ProbeOptions
from hwledger.producers.sysfs_gpus import PCI_DEVICES, read_sysfs_gpus
from hwledger.producers.telemetry import (
    CombinedTelemetry,
    NvmlTelemetry,
    SysfsTelemetry,
    TelemetrySource,
)
from hwledger.schemas.errors import UserError
from hwledger.schemas.identity import (
    OPTIONAL_SYSTEM_IDENTITY,
    system_hardware_id,
    system_software_id,
)
from hwledger.schemas.tokens import identify
from hwledger.seeds import gpu_catalog, interface_type_ids

SXM_SOCKETS = {"h100": "SXM5", "h200": "SXM5", "h800": "SXM5", "gh200": "SXM5",
               "a100": "SXM4", "a800": "SXM4", "v100": "SXM2", "p100": "SXM2"}
NODE_NAMESPACE = uuid.UUID("6f2d3c1e-3b0a-5f1e-9a59-0c6b5f2e7a10")


# ---- pure core -------------------------------------------------------------------------


def link_name(link: tuple[int, int] | None) -> str | None:
    """(4, 16) -> 'PCIe 4.0 x16' when that interface_type exists, else None."""
    if link is None:
        return None
    name = f"PCIe {link[0]}.0 x{link[1]}"
    return name if name in interface_type_ids() else None


def gpu_record(slot_index: int, raw: RawGpu) -> dict[str, Any]:
    """One `gpus[]` entry: token rules, catalog interface class, link names."""
    ident = identify(raw.name, raw.pci_vendor_id, raw.pci_device_id)
    entry = gpu_catalog().get((raw.pci_vendor_id, raw.pci_device_id))
    interface = entry.interface if entry else ("sxm" if "sxm" in raw.name.lower() else "pcie")
    socket = SXM_SOCKETS.get(ident.model) if interface == "sxm" else None
    native: str | None
    actual: str | None
    if socket is not None:
        native = actual = socket
    else:
        native = link_name(raw.max_link)
        # The negotiated generation drops when the GPU idles (power saving), so the current
        # generation is no property of the link; the negotiated width is (a degraded x8 link).
        actual = link_name((raw.max_link[0], raw.current_link[1])
                           if raw.max_link and raw.current_link else raw.current_link)
    return {
        "slot_index": slot_index, "vendor": ident.vendor, "model": ident.model,
        "name": raw.name, "pci_vendor_id": raw.pci_vendor_id,
        "pci_device_id": raw.pci_device_id, "pci_subsystem_id": raw.pci_subsystem_id,
        "vram_bytes": raw.vram_bytes, "interface": interface,
        "slot_native_interface": native, "actual_interface": actual,
        "power_limit_w": raw.power_limit_w,
    }


def build_snapshot(host: HostFacts, nvml: NvmlReport, other_gpus: list[RawGpu],
                   options: ProbeOptions, *, provider_id: str, node_id: str,
                   occurred_at: datetime | None = None) -> dict[str, Any]:
    """The HardwareSnapshotted payload: NVIDIA GPUs in NVML order, then the others."""
    gpus = [gpu_record(i, raw) for i, raw in enumerate([*nvml.gpus, *other_gpus])]
    return complete({
        "occurred_at": occurred_at or now(),
        "provider_id": provider_id, "node_id": node_id,
        "system": {"cpu_model": host.cpu_model, "cpu_vendor": host.cpu_vendor,
                   "cpu_cores": host.cpu_cores, "cpu_threads": host.cpu_threads,
                   "ram_bytes": host.ram_bytes, "architecture": host.architecture,
                   "motherboard": host.motherboard,
                   **{f: getattr(host, f) for f in OPTIONAL_SYSTEM_IDENTITY}},
        "software": {"os": host.os, "kernel_version": host.kernel_version,
                     "python_version": host.python_version,
                     "gpu_driver_version": nvml.driver_version, "cuda_version": nvml.cuda_version,
                     "rocm_version": None, "runner_version": hwledger_version()},
        "gpus": gpus,
        "allocatable": {
            "cpu_millicores": options.cpu_millicores
            if options.cpu_millicores is not None else host.cpu_threads * 1000,
            "memory_bytes": options.memory_bytes
            if options.memory_bytes is not None else host.ram_bytes,
            "ephemeral_storage_bytes": options.ephemeral_storage_bytes
            if options.ephemeral_storage_bytes is not None else host.disk_bytes,
        },
        "storage": [{"class": c, "bytes": b} for c, b in options.storage],
    })


def fingerprint(snapshot: Mapping[str, Any]) -> str:
    """What makes two snapshots the same: hardware and software identities, capacity offered.

    Event id, time and producer are not part of it, so a heartbeat has the same fingerprint.
    """
    return hashlib.sha256(json.dumps({
        "hardware": system_hardware_id(snapshot["system"], snapshot["gpus"]),
        "software": system_software_id(snapshot["software"]),
        "gpus": sorted(json.dumps(g, sort_keys=True) for g in snapshot["gpus"]),
        "provider": snapshot["provider_id"], "node": snapshot["node_id"],
        "allocatable": snapshot["allocatable"], "storage": snapshot["storage"],
    }, sort_keys=True, default=str).encode()).hexdigest()


# ---- shell -----------------------------------------------------------------------------


def node_id(override: str | None, home: Path,
            machine_id_file: Path = Path("/etc/machine-id")) -> str:
    """The override, else a UUIDv5 of /etc/machine-id, else an id kept in `home/node_id`.

    The machine id itself is not published (systemd asks for it to be hashed).
    """
    if override:
        return override
    machine_id = read_text(machine_id_file).strip()
    if machine_id:
        return str(uuid.uuid5(NODE_NAMESPACE, machine_id))
    state = home / "node_id"
    kept = read_text(state).strip()
    if kept:
        return kept
    generated = str(uuid.uuid4())
    try:
        home.mkdir(parents=True, exist_ok=True)
        state.write_text(generated + "\n", "utf-8")
    except OSError as exc:
        raise UserError(f"cannot keep the node id in {state}: {exc.strerror}; set "
                        "HWLEDGER_NODE_ID or HWLEDGER_HOME") from exc
    return generated


@dataclass
class Probe:
    """One probe result: the payload and what could not be read."""

    snapshot: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


class Prober:
    """Probes this host repeatedly; NVML is opened once and kept for cheap re-probes.

    `open_nvml=None` probes without NVML (no NVIDIA GPUs, no warning).
    """

    def __init__(self, provider_id: str, node: str, options: ProbeOptions | None = None, *,
                 open_nvml: Callable[[], Nvml] | None = PynvmlBackend,
                 pci_devices: Path = PCI_DEVICES,
                 read_host: Callable[[], HostFacts] = read_host_facts) -> None:
        self.provider_id = provider_id
        self.node_id = node
        self.options = options or ProbeOptions()
        self._open_nvml = open_nvml
        self._nvml: Nvml | None = None
        self._pci_devices = pci_devices
        self._read_host = read_host
        self._nvml_slots = 0
        self._sysfs_slots: dict[int, str] = {}

    def _nvml_report(self) -> NvmlReport:
        if self._open_nvml is None:
            return NvmlReport()
        if self._nvml is None:
            try:
                self._nvml = self._open_nvml()
            except NVML_ERRORS as exc:
                return unavailable(exc)
        return read_nvml(self._nvml)

    def probe(self) -> Probe:
        report = self._nvml_report()
        others = read_sysfs_gpus(self._pci_devices)
        snapshot = build_snapshot(self._read_host(), report, others, self.options,
                                  provider_id=self.provider_id, node_id=self.node_id)
        self._nvml_slots = len(report.gpus)
        self._sysfs_slots = {len(report.gpus) + i: g.bus_id for i, g in enumerate(others)}
        return Probe(snapshot, list(report.warnings))

    def telemetry_source(self, slots: Iterable[int]) -> TelemetrySource | None:
        """A source for the GPU slots of the last probe that NVML or amdgpu's sysfs files can
        watch (the slot order of `build_snapshot`: NVML's GPUs first, then the PCI tree's);
        None when none of `slots` can be watched."""
        wanted = set(slots)
        sources: list[TelemetrySource] = []
        nvidia = {s: s for s in sorted(wanted) if s < self._nvml_slots}
        if nvidia and self._nvml is not None:
            sources.append(NvmlTelemetry(self._nvml, nvidia))
        amd = {s: self._pci_devices / bus for s, bus in self._sysfs_slots.items() if s in wanted}
        if amd:
            sources.append(SysfsTelemetry(amd))
        if not sources:
            return None
        return sources[0] if len(sources) == 1 else CombinedTelemetry(sources)

    def close(self) -> None:
        close = getattr(self._nvml, "close", None)
        if close is not None:
            close()
