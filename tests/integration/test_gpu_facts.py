"""GPU facts against the real Postgres and broker: the seeded spec catalog in
`GET /v1/hardware/{id}`, a run's measured TFLOPS over the catalog's peak in `GET /v1/runs/{id}`,
and a run published by the runner library with its sampled figures."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hwledger.producers.nvml import RecordedNvml
from hwledger.producers.probe import Prober
from hwledger.producers.publisher import Publisher
from hwledger.producers.runner import Runner
from hwledger.projectors import catch_up
from hwledger.query import read_models
from hwledger.schemas.db import connect
from hwledger.schemas.units import GiB
from hwledger.seeds.seeding import seed_database
from tests import factories as f
from tests.integration.query_support import client, schema_with
from tests.waiting import wait_until

RUN_RECORDING = Path(__file__).parents[1] / "fixtures" / "nvml" / "h100_sxm_x2_run.json"
SPECS = Path(__file__).parents[2] / "seeds" / "gpu_specs.json"

MYSTERY = f.gpu(2, "h100-sxm", name="Mystery Accelerator", model="mystery", vendor="nvidia",
                pci_device_id="fffe")


def test_seeded_catalog_and_its_lookups(database_url: str) -> None:
    with schema_with(database_url, []) as schema, connect(database_url, schema) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM gpu_spec), (SELECT count(*) FROM gpu_architecture), "
            "(SELECT count(*) FROM compute_formats), (SELECT count(*) FROM gpu_tflops "
            "WHERE sparse_tflops IS NOT NULL AND abs(sparse_tflops - 2 * dense_tflops) > "
            "0.015 * sparse_tflops)").fetchone()
        assert counts == (31, 9, 8, 0)
        linked = conn.execute(
            "SELECT a.name, v.name, s.memory_bandwidth_gbps, t.dense_tflops, src.kind "
            "FROM gpu_spec s JOIN gpu_architecture a USING (gpu_architecture_id) "
            "JOIN vram_type v USING (vram_type_id) JOIN gpu_tflops t "
            "USING (pci_vendor_id, pci_device_id) JOIN compute_formats c USING (compute_format_id) "
            "JOIN tflops_source src ON src.tflops_source_id = t.tflops_source_id "
            "WHERE (s.pci_vendor_id, s.pci_device_id, c.name) = ('10de', '26b9', 'fp64')"
        ).fetchone()
        assert linked == ("Ada Lovelace", "GDDR6", 864.0, 1.43, "derived")
        assert seed_database(conn) == 0


def test_reseeding_a_changed_catalog_updates_and_drops_figures(database_url: str,
                                                               tmp_path: Path) -> None:
    doc = json.loads(SPECS.read_text("utf-8"))
    h200 = doc["gpu_specs"][0]
    h200["dense_tflops"]["fp8"], h200["tdp_w"] = None, 650
    del h200["sparse_tflops"]["fp8"]
    changed = tmp_path / "gpu_specs.json"
    changed.write_text(json.dumps(doc))
    query = ("SELECT s.tdp_w, array(SELECT c.name FROM gpu_tflops t JOIN compute_formats c "
             "USING (compute_format_id) WHERE (t.pci_vendor_id, t.pci_device_id) = "
             "(s.pci_vendor_id, s.pci_device_id) ORDER BY 1) FROM gpu_spec s "
             "WHERE s.pci_device_id = '2335'")
    with schema_with(database_url, []) as schema, connect(database_url, schema) as conn:
        assert seed_database(conn, specs_path=changed) == 2  # the spec row, the fp8 row
        assert conn.execute(query).fetchone() == (
            650, ["bf16", "fp16", "fp32", "fp64", "int8", "tf32"])
        assert seed_database(conn) == 2
        assert conn.execute(query).fetchone() == (
            700, ["bf16", "fp16", "fp32", "fp64", "fp8", "int8", "tf32"])


def test_hardware_and_run_routes_show_the_spec_and_the_tflops_utilization(
        database_url: str) -> None:
    snapshot = f.snapshot(gpus=[f.gpu(0), f.gpu(1), MYSTERY])
    cpu_only = f.snapshot("provider-b", gpus=[])
    bf16 = f.run_started(snapshot, "run-bf16", gpu_slots=[0, 1])
    unnamed = f.run_started(snapshot, "run-unnamed", gpu_slots=[0])
    mystery = f.run_started(snapshot, "run-mystery", gpu_slots=[1, 2])
    events: list[tuple[str, dict[str, Any]]] = [
        ("HardwareSnapshotted", snapshot), ("HardwareSnapshotted", cpu_only),
        ("RunStarted", bf16), ("RunStarted", unnamed),
        ("RunStarted", mystery),
        ("RunFinished", f.run_finished(bf16, measured_tflops=989.5, compute_format="bf16")),
        ("RunFinished", f.run_finished(unnamed, measured_tflops=100.0)),
        ("RunFinished", f.run_finished(mystery, measured_tflops=100.0, compute_format="bf16")),
    ]
    with schema_with(database_url, events) as schema, client(database_url, schema,
                                                              f.at(40)) as http:
        run = http.get("/v1/providers/provider-a/runs/run-bf16").json()
        read_models.Run.model_validate(run)
        assert run["metrics"]["computeFormat"] == "bf16"
        assert (run["metrics"]["peakTflops"], run["metrics"]["tflopsUtilizationPct"]) == (
            1979.0, 50.0)
        assert http.get("/v1/runs/run-bf16").json()["metrics"] == run["metrics"]
        for name in ("run-unnamed", "run-mystery"):
            metrics = http.get(f"/v1/runs/{name}").json()["metrics"]
            assert (metrics["peakTflops"], metrics["tflopsUtilizationPct"]) == (None, None)
        gpus = http.get(f"/v1/hardware/{run['hardware']['systemHardwareId']}").json()["gpus"]
        spec = gpus[0]["spec"]
        assert (spec["architecture"], spec["vramType"], spec["memoryBusWidthBits"],
                spec["memoryBandwidthGbps"], spec["boostClockMhz"], spec["tdpW"]) == (
            "Hopper", "HBM3", 5120, 3350.0, 1980, 700)
        assert spec["peakTflops"]["fp16"] == {"dense": 989.5, "sparse": 1979.0,
                                               "source": "nvidia-h100"}
        assert spec["peakTflops"]["fp4"] is None
        assert list(spec["peakTflops"]) == ["fp64", "fp32", "tf32", "fp16", "bf16", "fp8",
                                             "fp4", "int8"]
        assert spec["sources"]["nvidia-h100"]["url"].startswith("https://www.nvidia.com/")
        assert gpus[2]["spec"] is None
        assert run["hardware"]["gpus"][0]["spec"] == spec
        node = http.get("/v1/providers/provider-b").json()["nodes"][0]
        assert http.get(f"/v1/hardware/{node['systemHardwareId']}").json()["gpus"] == []


@pytest.mark.slow
def test_a_run_published_by_the_runner_library_shows_its_sampled_figures(
        database_url: str, db_schema: str, kafka_config: dict[str, Any], topic: str,
        home: Path, tmp_path: Path) -> None:
    recording = json.loads(RUN_RECORDING.read_text("utf-8"))
    nvml = RecordedNvml(recording)
    gpus = Prober("provider-t", "node-t", open_nvml=lambda: nvml, pci_devices=tmp_path)
    with Runner(gpus, Publisher(kafka_config, topic, home / "spool-gpu"), sample_hz=100) as runner:
        with runner.run(gpu_slots=[0, 1], run_id="run-sampled") as run:
            # 31 samples at 100 Hz, 0.3 s: the 8 recorded ones, then the last one held
            wait_until(lambda: nvml.asked(0, "power_mw") >= 31, 20, "31 GPU samples")
            run.metrics.update(measured_tflops=989.5, compute_format="bf16",
                               tokens_per_second=2310.0)
        assert runner.publisher.flush(20) == 0
    bare = Prober("provider-u", "node-u", open_nvml=None, pci_devices=tmp_path)
    with Runner(bare, Publisher(kafka_config, topic, home / "spool-bare")) as runner:
        with runner.run(run_id="run-bare"):
            time.sleep(0.05)  # the run's work: its measured duration is asserted below
        assert runner.publisher.flush(20) == 0
    catch_up(database_url, db_schema, kafka_config, topic)
    with client(database_url, db_schema, datetime.now(UTC)) as http:
        sampled_run = http.get("/v1/runs/run-sampled").json()
        read_models.Run.model_validate(sampled_run)
        sampled = sampled_run["metrics"]
        bare_metrics = http.get("/v1/providers/provider-u/runs/run-bare").json()["metrics"]
    assert sampled["peakVramBytes"] == 141 * GiB  # 71 + 70 GiB, the recording's peak
    assert 0.29 <= sampled["wallClockSeconds"] < 5
    # both GPUs draw at least 116 W and at most 661 W over the run
    assert 2 * 116 * 0.29 / 3600 < sampled["energyWh"] < 2 * 661 * 5 / 3600
    assert 0 < sampled["gpuSmUtilizationPct"] < 99
    assert (sampled["tokensPerSecond"], sampled["computeFormat"]) == (2310.0, "bf16")
    assert (sampled["peakTflops"], sampled["tflopsUtilizationPct"]) == (1979.0, 50.0)
    assert bare_metrics["wallClockSeconds"] >= 0.05
    assert [bare_metrics[k] for k in ("peakVramBytes", "energyWh", "gpuSmUtilizationPct",
                                      "tflopsUtilizationPct")] == [None] * 4
