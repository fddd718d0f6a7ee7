"""The hardware probe: this host's HardwareSnapshotted payload.

Pure core: `HostFacts` + GPUs (`RawGpu`, from NVML and /sys) + `ProbeOptions` ->
`build_snapshot(...)`; `fingerprint(...)` says whether two snapshots describe the same hardware
and software. Shell: `read_host_facts` (psutil, platform, /proc, /sys, os-release),
`node_id` (stable across restarts) and `Prober`, which keeps NVML open for cheap re-probes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from hwledger.producers.events import complete, hwledger_version, now
from hwledger.producers.nvml import (
    NVML_ERRORS,
    Nvml,
    NvmlReport,
    PynvmlBackend,
    RawGpu,
    read_nvml,
    unavailable,
)
from hwledger.producers.sysfs_gpus import DISPLAY_CLASS_PREFIX, PCI_DEVICES, read_sysfs_gpus
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
from hwledger.schemas.quantities import suffixed_quantity
from hwledger.schemas.tokens import identify
from hwledger.schemas.validation import UNLIMITED
from hwledger.seeds import gpu_catalog, interface_type_ids

ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
                 "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
CPU_VENDORS = {"genuineintel": "intel", "authenticamd": "amd", "hygongenuine": "hygon",
               "0x41": "arm", "0x61": "apple", "0xc0": "ampere", "0x48": "hisilicon",
               "0x4e": "nvidia", "0x51": "qualcomm"}
SXM_SOCKETS = {"h100": "SXM5", "h200": "SXM5", "h800": "SXM5", "gh200": "SXM5",
               "a100": "SXM4", "a800": "SXM4", "v100": "SXM2", "p100": "SXM2"}
DMI_PLACEHOLDERS = {"", "to be filled by o.e.m.", "default string", "not applicable",
                    "system product name", "none"}
CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq")
DMI_TABLE = Path("/sys/firmware/dmi/tables/DMI")
SMBIOS_MEMORY_DEVICE, SMBIOS_END = 17, 127
NODE_NAMESPACE = uuid.UUID("6f2d3c1e-3b0a-5f1e-9a59-0c6b5f2e7a10")
HEX = re.compile(r"0x[0-9a-fA-F]+")


@dataclass(frozen=True)
class HostFacts:
    """Everything about the host except its GPUs."""

    cpu_model: str
    cpu_vendor: str
    cpu_cores: int
    cpu_threads: int
    ram_bytes: int
    architecture: str
    motherboard: str | None
    os: str
    kernel_version: str
    python_version: str
    disk_bytes: int
    cpu_base_clock_mhz: int | None = None
    cpu_peak_clock_mhz: int | None = None
    memory_speed_mhz: int | None = None
    memory_channels: int | None = None
    memory_interleave_profile: str | None = None
    bar_size_mb: int | None = None


@dataclass(frozen=True)
class ProbeOptions:
    """Configured overrides: allocatable capacity (default: host totals) and storage classes."""

    cpu_millicores: int | None = None
    memory_bytes: int | None = None
    ephemeral_storage_bytes: int | None = None
    storage: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProbeOptions:
        """From HWLEDGER_ALLOCATABLE_* (a quantity, or -1 for unlimited) and
        HWLEDGER_STORAGE_CLASSES (`class=quantity,...`)."""
        env = os.environ if env is None else env

        def opt(name: str) -> int | None:
            raw = env.get(name, "").strip()
            if raw == str(UNLIMITED):
                return UNLIMITED
            return parse_quantity(raw, name) if raw else None

        storage = []
        for item in filter(None, (s.strip() for s in env.get("HWLEDGER_STORAGE_CLASSES",
                                                             "").split(","))):
            klass, sep, amount = item.partition("=")
            if not sep or not klass.strip():
                raise UserError(f"HWLEDGER_STORAGE_CLASSES: {item!r} is not class=quantity "
                                "(e.g. beta3=7000Gi)")
            storage.append((klass.strip(), parse_quantity(amount.strip(),
                                                          "HWLEDGER_STORAGE_CLASSES")))
        return cls(opt("HWLEDGER_ALLOCATABLE_CPU_MILLICORES"),
                   opt("HWLEDGER_ALLOCATABLE_MEMORY"),
                   opt("HWLEDGER_ALLOCATABLE_EPHEMERAL_STORAGE"), tuple(storage))


def parse_quantity(text: str, setting: str) -> int:
    """'7000Gi' -> bytes, '190000' -> 190000; UserError naming the setting otherwise."""
    found = suffixed_quantity(text)
    if found is None:
        raise UserError(f"{setting}: {text!r} is not a quantity like 190000, 512Gi or 2T")
    return found


# ---- pure core -------------------------------------------------------------------------


def architecture_name(machine: str) -> str:
    """platform.machine() in amd64/arm64 naming."""
    return ARCHITECTURES.get(machine.lower(), machine.lower() or "unknown")


def cpu_from_cpuinfo(text: str) -> tuple[str | None, str | None]:
    """(model name, vendor token) from /proc/cpuinfo text; None where it says nothing."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    raw_vendor = fields.get("vendor_id") or fields.get("cpu implementer")
    vendor = CPU_VENDORS.get(raw_vendor.lower(), raw_vendor.lower()) if raw_vendor else None
    model = fields.get("model name") or fields.get("hardware") or fields.get("cpu model")
    return model, vendor


def os_from_release(text: str) -> str | None:
    """PRETTY_NAME (else NAME VERSION) from os-release text."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values.get("PRETTY_NAME") or (
        " ".join(filter(None, (values.get("NAME"), values.get("VERSION")))) or None)


def motherboard_name(vendor: str | None, board: str | None) -> str | None:
    """'Supermicro' + 'H13DSG-O-CPU' from DMI, skipping firmware placeholder strings."""
    parts = [p.strip() for p in (vendor, board)
             if p is not None and p.strip().lower() not in DMI_PLACEHOLDERS]
    return " ".join(parts) or None


def clock_mhz(khz_text: str) -> int | None:
    """A cpufreq frequency file (kHz) in MHz; None when empty or not a positive number."""
    text = khz_text.strip()
    return round(int(text) / 1000) if text.isdigit() and int(text) > 0 else None


def _smbios_structures(table: bytes) -> list[tuple[int, bytes]]:
    """(type, formatted area) of each structure of a raw SMBIOS table (/sys/firmware/dmi/
    tables/DMI), up to the end-of-table structure or the first malformed one."""
    found, pos = [], 0
    while pos + 4 <= len(table):
        kind, length = table[pos], table[pos + 1]
        strings_end = table.find(b"\0\0", pos + length)
        if length < 4 or strings_end < 0 or kind == SMBIOS_END:
            break
        found.append((kind, table[pos:pos + length]))
        pos = strings_end + 2
    return found


def _word(area: bytes, offset: int, size: int = 2) -> int | None:
    return int.from_bytes(area[offset:offset + size], "little") if len(area) >= offset + size \
        else None


def _device_speed(area: bytes) -> int | None:
    """A type 17 structure's configured speed (MT/s), else its rated speed; 0xFFFF points to
    the extended DWORD fields of SMBIOS 3.3."""
    for offset, extended in ((0x20, 0x58), (0x15, 0x54)):
        speed = _word(area, offset)
        if speed == 0xFFFF:
            speed = _word(area, extended, 4)
        if speed:
            return speed
    return None


def memory_speed_mhz(table: bytes) -> int | None:
    """The speed installed memory runs at: the least speed of the populated SMBIOS memory
    devices (type 17, size not 0); None when the table names none."""
    speeds = [_device_speed(area) for kind, area in _smbios_structures(table)
              if kind == SMBIOS_MEMORY_DEVICE and _word(area, 0x0C) not in (None, 0)]
    known = [s for s in speeds if s is not None]
    return min(known) if known else None


def largest_bar_mb(resource_text: str) -> int | None:
    """The largest BAR of a PCI `resource` file (`start end flags` per line) in MiB; None
    when no BAR is set."""
    sizes = []
    for line in resource_text.splitlines():
        parts = line.split()
        if len(parts) == 3 and all(HEX.fullmatch(p) for p in parts[:2]):
            start, end = int(parts[0], 16), int(parts[1], 16)
            if end > start:
                sizes.append((end - start + 1) // 2**20)
    return max(sizes) if sizes and max(sizes) > 0 else None


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


def _read_text(path: Path) -> str:
    try:
        return path.read_text("utf-8", errors="replace")
    except OSError:
        return ""


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def read_bar_size_mb(pci_devices: Path = PCI_DEVICES) -> int | None:
    """The largest BAR of the display-class PCI devices (GPUs) under `pci_devices`, in MiB."""
    try:
        devices = sorted(pci_devices.iterdir())
    except OSError:
        return None
    sizes = [largest_bar_mb(_read_text(d / "resource")) for d in devices
             if _read_text(d / "class").startswith(DISPLAY_CLASS_PREFIX)]
    known = [s for s in sizes if s is not None]
    return max(known) if known else None


def read_host_facts(proc: Path = Path("/proc"), dmi: Path = Path("/sys/class/dmi/id"),
                    os_release: Path = Path("/etc/os-release"), disk: Path = Path("/"),
                    cpufreq: Path = CPUFREQ, dmi_table: Path = DMI_TABLE,
                    pci_devices: Path = PCI_DEVICES) -> HostFacts:
    """CPU, memory, board, OS and disk facts of this host; the optional host identity inputs
    where Linux exposes them (cpufreq, the SMBIOS table, PCI BARs), else None."""
    model, vendor = cpu_from_cpuinfo(_read_text(proc / "cpuinfo"))
    threads = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    cores = psutil.cpu_count(logical=False) or threads
    try:
        disk_bytes = psutil.disk_usage(str(disk)).total
    except OSError:
        disk_bytes = 0
    return HostFacts(
        cpu_model=model or platform.processor() or platform.machine() or "unknown",
        cpu_vendor=vendor or "unknown",
        cpu_cores=min(cores, threads), cpu_threads=threads,
        ram_bytes=psutil.virtual_memory().total,
        architecture=architecture_name(platform.machine()),
        motherboard=motherboard_name(_read_text(dmi / "board_vendor") or None,
                                     _read_text(dmi / "board_name") or None),
        os=os_from_release(_read_text(os_release)) or f"{platform.system()}",
        kernel_version=platform.release(), python_version=platform.python_version(),
        disk_bytes=disk_bytes,
        cpu_base_clock_mhz=clock_mhz(_read_text(cpufreq / "base_frequency")),
        cpu_peak_clock_mhz=clock_mhz(_read_text(cpufreq / "cpuinfo_max_freq")),
        memory_speed_mhz=memory_speed_mhz(_read_bytes(dmi_table)),
        bar_size_mb=read_bar_size_mb(pci_devices),
    )


def node_id(override: str | None, home: Path,
            machine_id_file: Path = Path("/etc/machine-id")) -> str:
    """The override, else a UUIDv5 of /etc/machine-id, else an id kept in `home/node_id`.

    The machine id itself is not published (systemd asks for it to be hashed).
    """
    if override:
        return override
    machine_id = _read_text(machine_id_file).strip()
    if machine_id:
        return str(uuid.uuid5(NODE_NAMESPACE, machine_id))
    state = home / "node_id"
    kept = _read_text(state).strip()
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
