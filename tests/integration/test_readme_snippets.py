"""The README's runner-library example, run as written against the real broker: it publishes
the host's snapshot, RunStarted and RunFinished with the metrics it sets. The host's NVML is the
recorded answers of an 8 x H100 machine (tests/fixtures/nvml), so the example's GPU slots exist
on a machine without GPUs; everything else is the example's own code path."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from hwledger.producers import runner
from hwledger.producers.nvml import RecordedNvml
from hwledger.producers.probe import Prober
from hwledger.schemas import codec
from tests.integration.test_publisher import consume
from tests.readme import blocks

FIXTURE = Path(__file__).parent.parent / "fixtures" / "nvml" / "h100_sxm_x8.json"


def test_the_readme_runner_example_publishes_a_run(
        kafka_config: dict[str, Any], topic: str, home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    answers = json.loads(FIXTURE.read_text("utf-8"))
    monkeypatch.setattr(runner, "Prober", functools.partial(
        Prober, open_nvml=lambda: RecordedNvml(answers)))
    for name, value in {"HWLEDGER_KAFKA_BOOTSTRAP": kafka_config["bootstrap.servers"],
                        "HWLEDGER_TOPIC": topic, "HWLEDGER_HOME": str(home),
                        "HWLEDGER_PROVIDER_ID": "akash1readme"}.items():
        monkeypatch.setenv(name, value)
    exec(compile(blocks("python")[0], "README.md", "exec"), {})
    events = [codec.decode(value) for _, value in consume(kafka_config, topic, 3)]
    assert [e.type for e in events] == ["HardwareSnapshotted", "RunStarted", "RunFinished"]
    started, finished = events[1].data, events[2].data
    assert started["resources"]["gpu_slots"] == [0, 1]
    assert started["snapshot_event_id"] == events[0].data["event_id"]
    assert (finished["status"], finished["tokens_per_second"]) == ("succeeded", 2310.0)
    assert (finished["measured_tflops"], finished["compute_format"]) == (612.0, "bf16")
