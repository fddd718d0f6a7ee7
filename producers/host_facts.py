"""This host's facts other than its GPUs: CPU, memory, board, OS, disk and identity inputs.

Pure core: parsers of what Linux exposes (`cpu_from_cpuinfo` for /proc/cpuinfo,
`os_from_release`, `motherboard_name` for DMI, `clock_mhz` for cpufreq, `memory_speed_mhz`
for the raw SMBIOS table, `largest_bar_mb` for a PCI `resource` file). Shell:
`read_host_facts` reads them (psutil, platform, /proc, /sys, os-release) into a `HostFacts`.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

import psutil

from hwledger.producers.sysfs_gpus import DISPLAY_CLASS_PREFIX, PCI_DEVICES

ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
                 "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
CPU_VENDORS = {"genuineintel": "intel", "authenticamd": "amd", "hygongenuine": "hygon",
               "0x41": "arm", "0x61": "apple", "0xc0": "ampere", "0x48": "hisilicon",
               "0x4e": "nvidia", "0x51": "qualcomm"}
DMI_PLACEHOLDERS = {"", "to be filled by o.e.m.", "default string", "not applicable",
                    "system product name", "none"}
CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq")
DMI_TABLE = Path("/sys/firmware/dmi/tables/DMI")
SMBIOS_MEMORY_DEVICE, SMBIOS_END = 17, 127
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


# ---- shell -----------------------------------------------------------------------------


def read_text(path: Path) -> str:
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
    sizes = [largest_bar_mb(read_text(d / "resource")) for d in devices
             if read_text(d / "class").startswith(DISPLAY_CLASS_PREFIX)]
    known = [s for s in sizes if s is not None]
    return max(known) if known else None


def read_host_facts(proc: Path = Path("/proc"), dmi: Path = Path("/sys/class/dmi/id"),
                    os_release: Path = Path("/etc/os-release"), disk: Path = Path("/"),
                    cpufreq: Path = CPUFREQ, dmi_table: Path = DMI_TABLE,
                    pci_devices: Path = PCI_DEVICES) -> HostFacts:
    """CPU, memory, board, OS and disk facts of this host; the optional host identity inputs
    where Linux exposes them (cpufreq, the SMBIOS table, PCI BARs), else None."""
    model, vendor = cpu_from_cpuinfo(read_text(proc / "cpuinfo"))
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
        motherboard=motherboard_name(read_text(dmi / "board_vendor") or None,
                                     read_text(dmi / "board_name") or None),
        os=os_from_release(read_text(os_release)) or f"{platform.system()}",
        kernel_version=platform.release(), python_version=platform.python_version(),
        disk_bytes=disk_bytes,
        cpu_base_clock_mhz=clock_mhz(read_text(cpufreq / "base_frequency")),
        cpu_peak_clock_mhz=clock_mhz(read_text(cpufreq / "cpuinfo_max_freq")),
        memory_speed_mhz=memory_speed_mhz(_read_bytes(dmi_table)),
        bar_size_mb=read_bar_size_mb(pci_devices),
    )
