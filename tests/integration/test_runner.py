"""The runner library and the agent against a real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from hwledger.producers.agent import run_agent
from hwledger.producers.host_facts import HostFacts, read_host_facts
from hwledger.producers.nvml import RecordedNvml
from hwledger.producers.probe import Prober, fingerprint
from hwledger.producers.publisher import Publisher
from hwledger.producers.runner import Runner, SnapshotTracker
from hwledger.schemas import codec
from hwledger.schemas.errors import UserError
from tests.integration.test_publisher import consume
from tests.waiting import wait_until

FIXTURES = Path(__file__).parent.parent / "fixtures" / "nvml"
A100_40GB = {"name": "NVIDIA A100-PCIE-40GB", "pci_device_id": 0x20F110DE,
             "pci_subsystem_id": 0x145F10DE, "bus_id": "00000000:CA:00.0",
             "memory_total": 42949672960, "max_link": [4, 16], "current_link": [4, 16],
             "power_limit_mw": 250000}


def recorded(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / name).read_text("utf-8"))
    return doc


def test_runner_publishes_a_new_snapshot_after_a_gpu_swap_and_none_otherwise(
        kafka_config: dict[str, Any], topic: str, home: Path) -> None:
    answers = recorded("a100_pcie_x4_degraded.json")
    prober = Prober("provider-r", "node-r", open_nvml=lambda: RecordedNvml(answers))
    with Runner(prober, Publisher(kafka_config, topic, home / "spool")) as runner:
        first_snapshot = runner.tracker.snapshot_event_id
        with runner.run(gpu_slots=[0, 1], cpu_millicores=16_000, memory_bytes=2**36,
                        task_ref="bench/llama3-70b") as run:
            run.metrics.update(tokens_per_second=2310.0, wall_clock_seconds=12.5)
        with runner.run(gpu_slots=[2], leased_ips=2):
            pass
        assert runner.tracker.snapshot_event_id == first_snapshot
        answers["devices"][3] = A100_40GB  # the card in slot 3 was swapped
        with pytest.raises(RuntimeError, match="out of memory"), \
                runner.run(gpu_slots=[3]) as failing:
            raise RuntimeError("out of memory")
        second_snapshot = runner.tracker.snapshot_event_id
        assert second_snapshot != first_snapshot
        with pytest.raises(UserError, match="not installed"), runner.run(gpu_slots=[9]):
            pass
        assert runner.publisher.flush(20) == 0
    events = [codec.decode(v) for _, v in consume(kafka_config, topic, 8)]
    assert [e.type for e in events] == [
        "HardwareSnapshotted", "RunStarted", "RunFinished", "RunStarted", "RunFinished",
        "HardwareSnapshotted", "RunStarted", "RunFinished"]
    before, after = events[0].data, events[5].data
    assert (before["event_id"], after["event_id"]) == (first_snapshot, second_snapshot)
    assert before["gpus"][3]["vram_bytes"] == 85899345920
    assert after["gpus"][3]["vram_bytes"] == 42949672960
    assert [e.data["snapshot_event_id"] for e in events if e.type == "RunStarted"] == [
        first_snapshot, first_snapshot, second_snapshot]
    assert events[1].data["resources"]["gpu_slots"] == [0, 1]
    assert [e.data["leased_ips"] for e in events if e.type == "RunStarted"] == [0, 2, 0]
    finished = events[2].data
    assert (finished["status"], finished["tokens_per_second"]) == ("succeeded", 2310.0)
    assert events[7].data["status"] == "failed"
    assert events[7].data["error_message"] == "RuntimeError: out of memory"
    assert events[7].data["run_id"] == failing.run_id


@pytest.mark.slow
def test_agent_publishes_on_change_between_heartbeats(
        kafka_config: dict[str, Any], topic: str, home: Path) -> None:
    answers = recorded("rtx4090_workstation.json")
    probes: list[HostFacts] = []

    def read_host() -> HostFacts:
        probes.append(read_host_facts())
        return probes[-1]

    prober = Prober("provider-g", "node-g", open_nvml=lambda: RecordedNvml(answers),
                    read_host=read_host)
    reasons: list[str] = []
    stop = threading.Event()
    with Publisher(kafka_config, topic, home / "spool") as publisher:
        tracker = SnapshotTracker(prober, publisher)
        agent = threading.Thread(target=run_agent, args=(tracker, stop), kwargs={
            "heartbeat_s": 60.0, "check_s": 0.05,
            "report": lambda reason, _event_id: reasons.append(reason)})
        agent.start()
        wait_until(lambda: len(probes) >= 5, 10, "several re-probes")  # nothing changed
        answers["devices"].append({**answers["devices"][0], "bus_id": "00000000:02:00.0"})
        wait_until(lambda: len(reasons) >= 2, 10, "the changed snapshot")
        stop.set()
        agent.join(10)
    assert reasons == ["start", "changed"]
    snapshots = [codec.decode(v).data for _, v in consume(kafka_config, topic, 2)]
    assert [len(s["gpus"]) for s in snapshots] == [1, 2]


@pytest.mark.slow
def test_agent_command_heartbeats_and_exits_cleanly_on_sigterm(
        kafka_config: dict[str, Any], topic: str, home: Path) -> None:
    env = {**os.environ, "HWLEDGER_HOME": str(home), "HWLEDGER_TOPIC": topic,
           "HWLEDGER_KAFKA_BOOTSTRAP": kafka_config["bootstrap.servers"],
           "HWLEDGER_PROVIDER_ID": "provider-agent"}
    agent = subprocess.Popen([sys.executable, "-m", "hwledger.deploy.cli", "agent",
                              "--interval", "0.5", "--check-interval", "0.5",
                              "--snapshot-every", "3"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    resnapshot = threading.Event()

    def read() -> None:
        assert agent.stdout is not None
        for line in agent.stdout:
            lines.append(line)
            if "(resnapshot)" in line:
                resnapshot.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    resnapshot.wait(60)  # start, two heartbeats, the safety-net snapshot: about 1.5 s
    agent.send_signal(signal.SIGTERM)
    agent.wait(timeout=20)
    reader.join(10)
    assert agent.stderr is not None
    err = agent.stderr.read()
    out = "".join(lines)
    assert agent.returncode == 0, err
    assert "(start)" in out and "(heartbeat)" in out and "(resnapshot)" in out
    assert "0 event(s) left" in out
    events = [codec.decode(v) for _, v in consume(kafka_config, topic, 4)]
    assert [e.type for e in events[:4]] == [
        "HardwareSnapshotted", "NodeHeartbeated", "NodeHeartbeated", "HardwareSnapshotted"]
    current = ""
    for event in events:  # each heartbeat names the snapshot published before it
        if event.type == "HardwareSnapshotted":
            current = event.data["event_id"]
        else:
            assert event.data["snapshot_event_id"] == current
            assert event.data["node_id"] == events[0].data["node_id"]
    snapshots = [e.data for e in events if e.type == "HardwareSnapshotted"]
    assert len({s["event_id"] for s in snapshots}) == len(snapshots)
    assert len({fingerprint(s) for s in snapshots}) == 1
