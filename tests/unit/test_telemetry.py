"""Run telemetry: the pure figures of samples, and the sampler on recorded NVML sequences, on
amdgpu's sysfs files and on a host without GPUs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from hwledger.producers.nvml import RecordedNvml
from hwledger.producers.probe import Prober
from hwledger.producers.runner import finished_metrics
from hwledger.producers.telemetry import Reading, Sample, Sampler, summarize
from hwledger.schemas.units import GiB
from tests.unit.test_probe import HOST, answers, sysfs_tree
from tests.waiting import wait_until

RUN = "h100_sxm_x2_run.json"


def _sample(at: float, *readings: tuple[int, float | None, int | None, float | None]
            ) -> Sample:
    return Sample(at, tuple(Reading(*r) for r in readings))


def test_figures_of_samples_peak_vram_trapezoid_energy_and_time_weighted_utilization() -> None:
    samples = [_sample(0.0, (0, 100.0, 1 * GiB, 0.0), (1, 50.0, 2 * GiB, 80.0)),
               _sample(0.1, (0, 200.0, 5 * GiB, 50.0), (1, 50.0, 2 * GiB, 80.0)),
               _sample(0.3, (0, 300.0, 4 * GiB, 100.0), (1, 50.0, 4 * GiB, 80.0))]
    figures = summarize(samples)
    # GPU 0: 0.1 s x 150 W + 0.2 s x 250 W = 65 J; GPU 1: 0.3 s x 50 W = 15 J
    assert figures["energy_wh"] == pytest.approx(80 / 3600)
    assert figures["peak_vram_bytes"] == 8 * GiB  # 4 + 4 at 0.3 s beats 5 + 2 at 0.1 s
    # GPU 0: (0.1 x 25 + 0.2 x 75) / 0.3 = 58.33; GPU 1: 80
    assert figures["gpu_sm_utilization_pct"] == pytest.approx((175 / 3 + 80) / 2)


def test_figures_without_what_they_need_are_none() -> None:
    assert summarize([]) == {"peak_vram_bytes": None, "energy_wh": None,
                             "gpu_sm_utilization_pct": None}
    one = summarize([_sample(5.0, (0, 300.0, None, 40.0))])
    assert one == {"peak_vram_bytes": None, "energy_wh": None, "gpu_sm_utilization_pct": 40.0}
    gaps = summarize([_sample(0.0, (0, None, GiB, None)), _sample(1.0, (0, 360.0, None, None)),
                      _sample(2.0, (0, 360.0, None, None))])
    assert gaps == {"peak_vram_bytes": GiB, "energy_wh": pytest.approx(0.1),
                    "gpu_sm_utilization_pct": None}


def test_the_caller_s_metrics_win_over_measured_ones() -> None:
    samples = [_sample(0.0, (0, 100.0, GiB, 50.0)), _sample(3.6, (0, 100.0, 2 * GiB, 50.0))]
    assert finished_metrics(3.6, samples, {"peak_vram_bytes": 7, "energy_wh": None}) == {
        "wall_clock_seconds": 3.6, "peak_vram_bytes": 7, "energy_wh": None,
        "gpu_sm_utilization_pct": 50.0}
    assert finished_metrics(1.5, [], {})["wall_clock_seconds"] == 1.5


def _prober(doc: dict[str, Any], pci: Path) -> Prober:
    prober = Prober("provider-a", "node-1", open_nvml=lambda: RecordedNvml(doc),
                    pci_devices=pci, read_host=lambda: HOST)
    prober.probe()
    return prober


def _sample_until(sampler: Sampler, count: int) -> list[Sample]:
    wait_until(lambda: len(sampler.samples) >= count, 10, f"{count} samples", interval=0.005)
    return sampler.stop()


def test_sampler_on_a_recorded_nvml_sequence(tmp_path: Path) -> None:
    doc = answers(RUN)
    source = _prober(doc, tmp_path).telemetry_source([0, 1])
    assert source is not None
    samples = _sample_until(Sampler(source, hz=200).start(), 12)
    recorded = [d["telemetry"] for d in doc["devices"]]
    assert samples[0].readings == tuple(
        Reading(slot, t[0]["power_mw"] / 1000, t[0]["memory_used"],
                float(t[0]["utilization_gpu"])) for slot, t in enumerate(recorded))
    assert [s.at for s in samples] == sorted(s.at for s in samples)
    assert len({s.at for s in samples}) == len(samples)
    figures = summarize(samples)
    assert figures["peak_vram_bytes"] == 141 * GiB  # 71 + 70 GiB, held from the 6th sample on
    assert 0 < figures["gpu_sm_utilization_pct"] < 99
    span = samples[-1].at - samples[0].at
    assert 2 * 116 * span / 3600 < figures["energy_wh"] < 2 * 661 * span / 3600


def test_sampler_reads_amd_gpus_from_sysfs_next_to_nvml(tmp_path: Path) -> None:
    doc = answers("mixed_vendor.json")
    pci = sysfs_tree(tmp_path / "pci", doc["sysfs"])
    mi210 = pci / "0000:c1:00.0"
    (mi210 / "hwmon" / "hwmon4").mkdir(parents=True)
    (mi210 / "hwmon" / "hwmon4" / "power1_average").write_text("187000000\n")
    (mi210 / "mem_info_vram_used").write_text(f"{40 * GiB}\n")
    (mi210 / "gpu_busy_percent").write_text("42\n")
    source = _prober(doc, pci).telemetry_source([2, 1])
    assert source is not None
    readings = source.read()
    assert Reading(2, 187.0, 40 * GiB, 42.0) in readings
    # the recording has no telemetry for the L4 in slot 1: NVML says Not Supported
    assert Reading(1, None, None, None) in readings


def test_no_source_on_a_host_without_gpus_or_for_slots_nobody_watches(tmp_path: Path) -> None:
    bare = Prober("provider-a", "node-1", open_nvml=None, pci_devices=tmp_path,
                  read_host=lambda: HOST)
    bare.probe()
    assert bare.telemetry_source([0]) is None
    broken = _prober(answers("driver_not_loaded.json"), tmp_path)
    assert broken.telemetry_source([0, 1]) is None
    assert _prober(answers(RUN), tmp_path).telemetry_source([]) is None


class _Exploding:
    def __init__(self) -> None:
        self.calls = 0

    def read(self) -> list[Reading]:
        self.calls += 1
        if self.calls > 2:
            raise RuntimeError("device lost")
        return [Reading(0, 100.0, GiB, 10.0)]


def test_a_failing_source_stops_the_sampling_with_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    source = _Exploding()
    with caplog.at_level(logging.WARNING):
        sampler = Sampler(source, hz=500).start()
        wait_until(lambda: source.calls >= 3, 5, "the third reading", interval=0.005)
        samples = sampler.stop()
    assert len(samples) == 2 and source.calls == 3
    assert [r.getMessage() for r in caplog.records] == [
        "GPU telemetry stopped: RuntimeError: device lost"]


def test_the_sample_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="sample rate must be positive"):
        Sampler(_Exploding(), hz=0)


def test_the_overhead_benchmark_times_the_sampler_against_no_sampler() -> None:
    from hwledger.deploy.bench.telemetry import run_telemetry_benchmark

    found = run_telemetry_benchmark(seconds=0.3, repeats=1, hz=50, gpus=2)
    assert 30 <= found["samples_per_second"] <= 60  # 50 Hz plus the start and stop samples
    assert found["cpu_s_per_s_sampler"] > 0 and found["cpu_s_per_s_baseline"] >= 0
    difference = found["cpu_s_per_s_sampler"] - found["cpu_s_per_s_baseline"]
    # each of the three figures is rounded to 1e-6 on its own
    assert found["overhead_cpu_s_per_s"] == pytest.approx(difference, abs=2e-6)
