"""Non-NVIDIA GPUs (AMD, Intel discrete) read from the PCI tree in /sys.

NVML only sees NVIDIA cards; on a mixed-vendor box the others come from
`/sys/bus/pci/devices/*`: display-class devices whose driver reports VRAM
(`mem_info_vram_total`, as amdgpu does). Link speed and width come from the standard PCI files.
The root is a parameter so tests replay a recorded tree.
"""

from __future__ import annotations

from pathlib import Path

from hwledger.producers.nvml import RawGpu
from hwledger.seeds import gpu_catalog

DISPLAY_CLASS_PREFIX = "0x03"
NVIDIA = "10de"
SPEED_TO_GENERATION = {"2.5": 1, "5.0": 2, "8.0": 3, "16.0": 4, "32.0": 5, "64.0": 6}
PCI_DEVICES = Path("/sys/bus/pci/devices")


def _read(path: Path) -> str | None:
    try:
        return path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _hex(path: Path, width: int) -> str | None:
    text = _read(path)
    return None if text is None else text.lower().removeprefix("0x").zfill(width)


def link_generation(speed: str | None) -> int | None:
    """'16.0 GT/s PCIe' -> 4; None for an unknown or missing speed."""
    if not speed:
        return None
    return SPEED_TO_GENERATION.get(speed.split()[0])


def _link(device: Path, prefix: str) -> tuple[int, int] | None:
    generation = link_generation(_read(device / f"{prefix}_link_speed"))
    width = _read(device / f"{prefix}_link_width")
    if generation is None or width is None or not width.isdigit():
        return None
    return generation, int(width)


def _gpu(device: Path) -> RawGpu | None:
    klass, vendor, device_id = (_read(device / "class"), _hex(device / "vendor", 4),
                                _hex(device / "device", 4))
    vram = _read(device / "mem_info_vram_total")
    if (klass is None or not klass.startswith(DISPLAY_CLASS_PREFIX) or vendor in (None, NVIDIA)
            or device_id is None or vram is None or not vram.isdigit() or int(vram) <= 0):
        return None
    assert vendor is not None
    sub_vendor, sub_device = _hex(device / "subsystem_vendor", 4), _hex(
        device / "subsystem_device", 4)
    entry = gpu_catalog().get((vendor, device_id))
    name = entry.name if entry else (_read(device / "product_name") or f"GPU {vendor}:{device_id}")
    return RawGpu(
        name=name, pci_vendor_id=vendor, pci_device_id=device_id,
        pci_subsystem_id=f"{sub_device}{sub_vendor}" if sub_vendor and sub_device else None,
        vram_bytes=int(vram), max_link=_link(device, "max"), current_link=_link(device, "current"),
        power_limit_w=None, bus_id=device.name.lower(),
    )


def read_sysfs_gpus(root: Path = PCI_DEVICES) -> list[RawGpu]:
    """Non-NVIDIA GPUs with known VRAM under `root`, in PCI bus order."""
    try:
        devices = sorted(root.iterdir())
    except OSError:
        return []
    return [gpu for gpu in map(_gpu, devices) if gpu is not None]
