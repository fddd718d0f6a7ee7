"""Telemetry of a run's GPUs while the run is open: sources, the sampler thread, the figures.

A `TelemetrySource` reads power, memory used and utilisation of some GPU slots now:
`NvmlTelemetry` through NVML (NVIDIA), `SysfsTelemetry` through the amdgpu files under
`/sys/bus/pci/devices/<bus id>/` (hwmon `power1_average`, `mem_info_vram_used`,
`gpu_busy_percent`). `Sampler` asks a source at a fixed rate (default 10 Hz) on a thread of its
own and keeps the samples; `summarize` is the pure rule from samples to RunFinished figures:
peak VRAM (the most the run's GPUs held together at one sample), energy (trapezoid integral
of each GPU's power over time, summed, in Wh) and mean utilisation (time-weighted per GPU,
averaged over the GPUs).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

from hwledger.producers.nvml import Nvml, optional

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_HZ = 10.0
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Reading:
    """One GPU slot at one instant; None where the source cannot say."""

    slot_index: int
    power_w: float | None
    memory_used_bytes: int | None
    utilization_pct: float | None


@dataclass(frozen=True, slots=True)
class Sample:
    """Every covered slot's reading at `at` (seconds on a monotonic clock)."""

    at: float
    readings: tuple[Reading, ...]


class TelemetrySource(Protocol):
    """Reads the slots it covers now; a figure it cannot read is None, never an exception."""

    def read(self) -> list[Reading]: ...


class NvmlTelemetry:
    """NVIDIA slots through NVML: `indexes` maps slot index -> NVML device index."""

    def __init__(self, nvml: Nvml, indexes: Mapping[int, int]) -> None:
        self.nvml = nvml
        self.indexes = dict(indexes)

    def _reading(self, slot: int, index: int) -> Reading:
        power_mw = optional(lambda: self.nvml.power_usage_mw(index))
        utilization = optional(lambda: self.nvml.utilization_gpu_pct(index))
        return Reading(slot, None if power_mw is None else power_mw / 1000,
                       optional(lambda: self.nvml.memory_used(index)),
                       None if utilization is None else float(utilization))

    def read(self) -> list[Reading]:
        return [self._reading(slot, index) for slot, index in self.indexes.items()]


def _number(path: Path) -> int | None:
    try:
        text = path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _power_microwatts(device: Path) -> int | None:
    """amdgpu's average board power (power1_average, or power1_input on newer kernels)."""
    for hwmon in sorted(device.glob("hwmon/hwmon*")):
        for name in ("power1_average", "power1_input"):
            value = _number(hwmon / name)
            if value is not None:
                return value
    return None


class SysfsTelemetry:
    """AMD slots through amdgpu's sysfs files: `devices` maps slot index -> PCI device folder."""

    def __init__(self, devices: Mapping[int, Path]) -> None:
        self.devices = dict(devices)

    def read(self) -> list[Reading]:
        found = []
        for slot, device in self.devices.items():
            power_uw = _power_microwatts(device)
            busy = _number(device / "gpu_busy_percent")
            found.append(Reading(slot, None if power_uw is None else power_uw / 1e6,
                                 _number(device / "mem_info_vram_used"),
                                 None if busy is None else float(busy)))
        return found


class CombinedTelemetry:
    """Several sources read as one (NVIDIA and AMD GPUs in one run)."""

    def __init__(self, sources: Sequence[TelemetrySource]) -> None:
        self.sources = list(sources)

    def read(self) -> list[Reading]:
        return [reading for source in self.sources for reading in source.read()]


def _series(samples: Sequence[Sample], figure: str) -> dict[int, list[tuple[float, float]]]:
    """slot -> [(time, value)] of one figure, leaving out readings without it."""
    found: dict[int, list[tuple[float, float]]] = {}
    for sample in samples:
        for reading in sample.readings:
            value = getattr(reading, figure)
            if value is not None:
                found.setdefault(reading.slot_index, []).append((sample.at, float(value)))
    return found


def _integral(points: Sequence[tuple[float, float]]) -> float:
    """Trapezoid integral of value over time."""
    return sum((t1 - t0) * (v0 + v1) / 2 for (t0, v0), (t1, v1) in pairwise(points))


def _mean(points: Sequence[tuple[float, float]]) -> float:
    """Time-weighted mean of a series (the plain mean when it spans no time)."""
    span = points[-1][0] - points[0][0]
    if span <= 0:
        return sum(v for _, v in points) / len(points)
    return _integral(points) / span


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """RunFinished figures of a run's samples: `peak_vram_bytes`, `energy_wh` and
    `gpu_sm_utilization_pct`, each None when no sample has what it needs (energy needs two
    power readings of a GPU)."""
    totals = [sum(r.memory_used_bytes for r in s.readings if r.memory_used_bytes is not None)
              for s in samples if any(r.memory_used_bytes is not None for r in s.readings)]
    power = [points for points in _series(samples, "power_w").values() if len(points) > 1]
    utilization = list(_series(samples, "utilization_pct").values())
    return {
        "peak_vram_bytes": max(totals) if totals else None,
        "energy_wh": sum(map(_integral, power)) / SECONDS_PER_HOUR if power else None,
        "gpu_sm_utilization_pct": (sum(map(_mean, utilization)) / len(utilization)
                                   if utilization else None),
    }


class Sampler:
    """Reads `source` every 1/`hz` seconds on a daemon thread between `start` and `stop`, plus
    once at each of them. A source that raises stops the sampling with one warning; the run
    goes on and keeps the samples taken."""

    def __init__(self, source: TelemetrySource, hz: float = DEFAULT_SAMPLE_HZ) -> None:
        if hz <= 0:
            raise ValueError(f"sample rate must be positive (got {hz})")
        self.source = source
        self.interval = 1 / hz
        self.samples: list[Sample] = []
        self._failed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hwledger-telemetry",
                                        daemon=True)

    def _sample(self) -> bool:
        try:
            self.samples.append(Sample(time.monotonic(), tuple(self.source.read())))
        except Exception as exc:  # a telemetry failure must not fail the run it watches
            log.warning("GPU telemetry stopped: %s: %s", type(exc).__name__, exc)
            self._failed = True
            return False
        return True

    def _loop(self) -> None:
        due = time.monotonic()
        while self._sample():
            due += self.interval
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        """Stop the thread, take a last sample, and return every sample in time order."""
        self._stop.set()
        self._thread.join()
        if not self._failed:
            self._sample()
        return self.samples
