"""`hwledger bench telemetry`: the run sampler's CPU cost per second of run.

A run that only sleeps is timed twice, alternately: with no sampler (the baseline: what the
process spends anyway) and with a `Sampler` at `hz` over a recorded NVML source of `gpus`
devices (`RecordedNvml`, so the figure is hwledger's own cost; a real driver adds its NVML
call time). CPU is the process's (`time.process_time`, every thread) over the wall time.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from hwledger.producers.nvml import RecordedNvml
from hwledger.producers.telemetry import NvmlTelemetry, Sampler
from hwledger.schemas.units import GiB


def recorded_answers(gpus: int, steps: int = 50) -> dict[str, Any]:
    """NVML answers of `gpus` busy GPUs, each with a `steps`-long telemetry sequence."""
    return {"devices": [{"telemetry": [
        {"power_mw": 300_000 + 1000 * ((step * 7 + gpu) % 300),
         "memory_used": (40 + (step + gpu) % 30) * GiB, "utilization_gpu": 60 + step % 40}
        for step in range(steps)]} for gpu in range(gpus)]}


def _cpu_per_second(seconds: float, sampler: Sampler | None) -> tuple[float, int]:
    """(CPU seconds per wall second, samples taken) of a run of `seconds` that sleeps."""
    wall, cpu = time.perf_counter(), time.process_time()
    if sampler is not None:
        sampler.start()
    time.sleep(seconds)
    samples = 0 if sampler is None else len(sampler.stop())
    return (time.process_time() - cpu) / (time.perf_counter() - wall), samples


def run_telemetry_benchmark(*, seconds: float, repeats: int, hz: float, gpus: int
                            ) -> dict[str, Any]:
    """Medians over `repeats` alternating runs with and without the sampler."""
    base: list[float] = []
    sampled: list[float] = []
    counts: list[int] = []
    for _ in range(repeats):
        base.append(_cpu_per_second(seconds, None)[0])
        source = NvmlTelemetry(RecordedNvml(recorded_answers(gpus)), {i: i for i in range(gpus)})
        cpu, count = _cpu_per_second(seconds, Sampler(source, hz))
        sampled.append(cpu)
        counts.append(count)
    with_sampler, baseline = statistics.median(sampled), statistics.median(base)
    samples_per_second = statistics.median(counts) / seconds
    overhead = with_sampler - baseline
    return {
        "hz": hz, "gpus": gpus, "seconds": seconds, "repeats": repeats,
        "samples_per_second": round(samples_per_second, 2),
        "cpu_s_per_s_sampler": round(with_sampler, 6),
        "cpu_s_per_s_baseline": round(baseline, 6),
        "overhead_cpu_s_per_s": round(overhead, 6),
        "overhead_us_per_sample": round(1e6 * overhead / samples_per_second, 1),
        "ratio": round(with_sampler / baseline, 2) if baseline > 0 else None,
    }
