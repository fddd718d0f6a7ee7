"""The NVML calls the probe and the run sampler make, behind a small interface.

`Nvml` names exactly the questions the probe and the sampler (`producers.telemetry`) ask
NVML. `PynvmlBackend` asks the real library (package nvidia-ml-py); `RecordedNvml` replays
answers recorded on real machines (the unit tests' fixtures). `read_nvml` turns the answers
into `RawGpu` records plus driver versions; any NVML failure (no library, no driver, an error)
yields zero GPUs and one warning, never a crash.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class NvmlUnavailable(Exception):
    """NVML cannot answer: no library, no driver, or a failing call."""


@dataclass(frozen=True)
class RawGpu:
    """One GPU as a hardware source reports it, before token rules and catalog lookups."""

    name: str
    pci_vendor_id: str
    pci_device_id: str
    pci_subsystem_id: str | None
    vram_bytes: int
    max_link: tuple[int, int] | None  # (PCIe generation, width) the slot and card allow
    current_link: tuple[int, int] | None  # (generation, width) negotiated now
    power_limit_w: int | None
    bus_id: str = ""


@dataclass(frozen=True)
class NvmlReport:
    """What NVML said about this host: GPUs in NVML index order, versions, warnings."""

    gpus: list[RawGpu] = field(default_factory=list)
    driver_version: str | None = None
    cuda_version: str | None = None
    warnings: list[str] = field(default_factory=list)


class Nvml(Protocol):
    """The NVML questions the probe asks; every method raises NvmlUnavailable on failure."""

    def driver_version(self) -> str: ...

    def cuda_driver_version(self) -> int: ...

    def device_count(self) -> int: ...

    def name(self, index: int) -> str: ...

    def pci_info(self, index: int) -> tuple[int, int, str]:
        """(pciDeviceId, pciSubSystemId, busId) with NVML's packing: device<<16 | vendor."""
        ...

    def memory_total(self, index: int) -> int: ...

    def max_link(self, index: int) -> tuple[int, int]: ...

    def current_link(self, index: int) -> tuple[int, int]: ...

    def power_limit_mw(self, index: int) -> int: ...

    def power_usage_mw(self, index: int) -> int:
        """The board's power draw now (milliwatts)."""
        ...

    def memory_used(self, index: int) -> int:
        """Device memory in use now (bytes), every process's."""
        ...

    def utilization_gpu_pct(self, index: int) -> int:
        """Percent of the last sample period in which a kernel ran (NVML's `gpu` rate)."""
        ...


class PynvmlBackend:
    """The real NVML through pynvml; initialised once, shut down by `close`."""

    def __init__(self) -> None:
        import pynvml

        self._nvml: Any = pynvml
        self._call(pynvml.nvmlInit)
        self._handles: dict[int, Any] = {}

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except self._nvml.NVMLError as exc:
            raise NvmlUnavailable(str(exc)) from exc

    def _handle(self, index: int) -> Any:
        if index not in self._handles:
            self._handles[index] = self._call(self._nvml.nvmlDeviceGetHandleByIndex, index)
        return self._handles[index]

    def driver_version(self) -> str:
        return _text(self._call(self._nvml.nvmlSystemGetDriverVersion))

    def cuda_driver_version(self) -> int:
        return int(self._call(self._nvml.nvmlSystemGetCudaDriverVersion))

    def device_count(self) -> int:
        return int(self._call(self._nvml.nvmlDeviceGetCount))

    def name(self, index: int) -> str:
        return _text(self._call(self._nvml.nvmlDeviceGetName, self._handle(index)))

    def pci_info(self, index: int) -> tuple[int, int, str]:
        info = self._call(self._nvml.nvmlDeviceGetPciInfo, self._handle(index))
        return int(info.pciDeviceId), int(info.pciSubSystemId), _text(info.busId)

    def memory_total(self, index: int) -> int:
        return int(self._call(self._nvml.nvmlDeviceGetMemoryInfo, self._handle(index)).total)

    def max_link(self, index: int) -> tuple[int, int]:
        handle = self._handle(index)
        return (int(self._call(self._nvml.nvmlDeviceGetMaxPcieLinkGeneration, handle)),
                int(self._call(self._nvml.nvmlDeviceGetMaxPcieLinkWidth, handle)))

    def current_link(self, index: int) -> tuple[int, int]:
        handle = self._handle(index)
        return (int(self._call(self._nvml.nvmlDeviceGetCurrPcieLinkGeneration, handle)),
                int(self._call(self._nvml.nvmlDeviceGetCurrPcieLinkWidth, handle)))

    def power_limit_mw(self, index: int) -> int:
        return int(self._call(self._nvml.nvmlDeviceGetPowerManagementLimit, self._handle(index)))

    def power_usage_mw(self, index: int) -> int:
        return int(self._call(self._nvml.nvmlDeviceGetPowerUsage, self._handle(index)))

    def memory_used(self, index: int) -> int:
        return int(self._call(self._nvml.nvmlDeviceGetMemoryInfo, self._handle(index)).used)

    def utilization_gpu_pct(self, index: int) -> int:
        return int(self._call(self._nvml.nvmlDeviceGetUtilizationRates, self._handle(index)).gpu)

    def close(self) -> None:
        with contextlib.suppress(NvmlUnavailable):
            self._call(self._nvml.nvmlShutdown)


class RecordedNvml:
    """Replays NVML answers recorded on a real machine.

    `answers` holds `driver_version`, `cuda_driver_version` and `devices`, a list of objects
    with `name`, `pci_device_id`, `pci_subsystem_id` (NVML's packed integers), `bus_id`,
    `memory_total`, `max_link` and `current_link` ([generation, width]) and `power_limit_mw`.
    A value of null, or an `error` string at the top level, replays as an NVML error. A device's
    optional `telemetry` list holds one {power_mw, memory_used, utilization_gpu} a sample: the
    n-th question of a kind about a device gets the n-th entry (the last one once used up).
    """

    def __init__(self, answers: Mapping[str, Any]) -> None:
        if answers.get("error"):
            raise NvmlUnavailable(str(answers["error"]))
        self.answers = answers
        self._asked: dict[tuple[int, str], int] = {}

    def _sampled(self, index: int, key: str) -> int:
        sequence = self.answers["devices"][index].get("telemetry") or []
        asked = self._asked.get((index, key), 0)
        self._asked[(index, key)] = asked + 1
        value = sequence[min(asked, len(sequence) - 1)].get(key) if sequence else None
        if value is None:
            raise NvmlUnavailable(f"{key}: Not Supported")
        return int(value)

    def asked(self, index: int, key: str) -> int:
        """How many times device `index`'s sampled `key` (`power_mw`, ...) was asked for."""
        return self._asked.get((index, key), 0)

    def _top(self, key: str) -> Any:
        value = self.answers.get(key)
        if value is None:
            raise NvmlUnavailable(f"{key}: Not Supported")
        return value

    def _device(self, index: int, key: str) -> Any:
        value = self.answers["devices"][index].get(key)
        if value is None:
            raise NvmlUnavailable(f"{key}: Not Supported")
        return value

    def driver_version(self) -> str:
        return str(self._top("driver_version"))

    def cuda_driver_version(self) -> int:
        return int(self._top("cuda_driver_version"))

    def device_count(self) -> int:
        return len(self.answers["devices"])

    def name(self, index: int) -> str:
        return str(self._device(index, "name"))

    def pci_info(self, index: int) -> tuple[int, int, str]:
        return (int(self._device(index, "pci_device_id")),
                int(self._device(index, "pci_subsystem_id")),
                str(self._device(index, "bus_id")))

    def memory_total(self, index: int) -> int:
        return int(self._device(index, "memory_total"))

    def max_link(self, index: int) -> tuple[int, int]:
        gen, width = self._device(index, "max_link")
        return int(gen), int(width)

    def current_link(self, index: int) -> tuple[int, int]:
        gen, width = self._device(index, "current_link")
        return int(gen), int(width)

    def power_limit_mw(self, index: int) -> int:
        return int(self._device(index, "power_limit_mw"))

    def power_usage_mw(self, index: int) -> int:
        return self._sampled(index, "power_mw")

    def memory_used(self, index: int) -> int:
        return self._sampled(index, "memory_used")

    def utilization_gpu_pct(self, index: int) -> int:
        return self._sampled(index, "utilization_gpu")


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def optional(fn: Callable[[], T]) -> T | None:
    """An answer some GPUs do not give (power limit on a GeForce card, link on SXM boards)."""
    try:
        return fn()
    except NvmlUnavailable:
        return None


def cuda_version_text(packed: int) -> str:
    """NVML's packed CUDA driver version (12040) as text ("12.4")."""
    return f"{packed // 1000}.{packed % 1000 // 10}"


def _gpu(nvml: Nvml, index: int) -> RawGpu:
    device_id, subsystem_id, bus_id = nvml.pci_info(index)
    power_mw = optional(lambda: nvml.power_limit_mw(index))
    return RawGpu(
        name=nvml.name(index),
        pci_vendor_id=f"{device_id & 0xFFFF:04x}",
        pci_device_id=f"{device_id >> 16:04x}",
        pci_subsystem_id=f"{subsystem_id:08x}" if subsystem_id else None,
        vram_bytes=nvml.memory_total(index),
        max_link=optional(lambda: nvml.max_link(index)),
        current_link=optional(lambda: nvml.current_link(index)),
        power_limit_w=None if power_mw is None else round(power_mw / 1000),
        bus_id=bus_id.lower(),
    )


NVML_ERRORS = (NvmlUnavailable, ImportError, OSError)


def unavailable(exc: BaseException) -> NvmlReport:
    """The report when NVML cannot answer: zero GPUs and one warning."""
    return NvmlReport(warnings=[f"NVML unavailable, reporting no NVIDIA GPUs: {exc}"])


def read_nvml(nvml: Nvml) -> NvmlReport:
    """Every NVIDIA GPU NVML sees, or zero GPUs and one warning when NVML fails."""
    try:
        packed_cuda = optional(nvml.cuda_driver_version)
        return NvmlReport(
            gpus=[_gpu(nvml, i) for i in range(nvml.device_count())],
            driver_version=optional(nvml.driver_version),
            cuda_version=None if packed_cuda is None else cuda_version_text(packed_cuda),
        )
    except NVML_ERRORS as exc:
        return unavailable(exc)
