"""The probe against NVML answers recorded on real machines, and its pure helpers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hwledger.deploy.cli import main
from hwledger.producers.events_file import parse_time
from hwledger.producers.host_facts import (
    HostFacts,
    architecture_name,
    clock_mhz,
    cpu_from_cpuinfo,
    largest_bar_mb,
    memory_speed_mhz,
    motherboard_name,
    os_from_release,
    read_host_facts,
)
from hwledger.producers.nvml import Nvml, NvmlUnavailable, RecordedNvml, cuda_version_text
from hwledger.producers.probe import Prober, fingerprint, link_name, node_id
from hwledger.producers.probe_options import ProbeOptions, parse_quantity
from hwledger.schemas import codec, validation
from hwledger.schemas.errors import UserError
from hwledger.schemas.identity import OPTIONAL_SYSTEM_IDENTITY, system_hardware_id
from hwledger.schemas.units import GiB

FIXTURES = Path(__file__).parent.parent / "fixtures" / "nvml"
HOST_FIXTURES = Path(__file__).parent.parent / "fixtures" / "host"
HOST = HostFacts(cpu_model="AMD EPYC 9654 96-Core Processor", cpu_vendor="amd", cpu_cores=96,
                 cpu_threads=192, ram_bytes=1536 * GiB, architecture="amd64",
                 motherboard="Supermicro H13DSG-O-CPU", os="Ubuntu 22.04.4 LTS",
                 kernel_version="5.15.0-105-generic", python_version="3.11.7",
                 disk_bytes=3840 * GiB)


def answers(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / name).read_text("utf-8"))
    return doc


def sysfs_tree(root: Path, devices: dict[str, dict[str, str]]) -> Path:
    for address, files in devices.items():
        (root / address).mkdir(parents=True)
        for file_name, content in files.items():
            (root / address / file_name).write_text(content + "\n")
    return root


def prober_for(doc: dict[str, Any], tmp_path: Path,
               options: ProbeOptions | None = None) -> Prober:
    pci = sysfs_tree(tmp_path / "pci", doc.get("sysfs", {}))
    return Prober("provider-a", "node-1", options, open_nvml=lambda: RecordedNvml(doc),
                  pci_devices=pci, read_host=lambda: HOST)


def probe_fixture(name: str, tmp_path: Path) -> dict[str, Any]:
    result = prober_for(answers(name), tmp_path).probe()
    assert result.warnings == []
    snapshot = result.snapshot
    assert codec.describe_invalid("HardwareSnapshotted", snapshot) is None
    assert validation.problems("HardwareSnapshotted", snapshot) == []
    return snapshot


def test_h100_sxm_box(tmp_path: Path) -> None:
    snapshot = probe_fixture("h100_sxm_x8.json", tmp_path)
    gpus = snapshot["gpus"]
    assert [g["slot_index"] for g in gpus] == list(range(8))
    assert {(g["vendor"], g["model"], g["interface"]) for g in gpus} == {("nvidia", "h100", "sxm")}
    assert {(g["slot_native_interface"], g["actual_interface"]) for g in gpus} == {
        ("SXM5", "SXM5")}
    assert gpus[0]["pci_vendor_id"] == "10de" and gpus[0]["pci_device_id"] == "2330"
    assert gpus[0]["pci_subsystem_id"] == "16c110de"
    assert gpus[0]["vram_bytes"] == 85520809984 and gpus[0]["power_limit_w"] == 700
    assert snapshot["software"]["gpu_driver_version"] == "550.54.15"
    assert snapshot["software"]["cuda_version"] == "12.4"
    assert snapshot["system"] == {
        "cpu_model": HOST.cpu_model, "cpu_vendor": "amd", "cpu_cores": 96, "cpu_threads": 192,
        "ram_bytes": 1536 * GiB, "architecture": "amd64",
        "motherboard": "Supermicro H13DSG-O-CPU", **dict.fromkeys(OPTIONAL_SYSTEM_IDENTITY)}


def test_a100_box_reports_the_degraded_link_but_not_an_idle_generation(tmp_path: Path) -> None:
    gpus = probe_fixture("a100_pcie_x4_degraded.json", tmp_path)["gpus"]
    assert {(g["model"], g["interface"]) for g in gpus} == {("a100", "pcie")}
    assert [g["slot_native_interface"] for g in gpus] == ["PCIe 4.0 x16"] * 4
    assert [g["actual_interface"] for g in gpus] == [
        "PCIe 4.0 x16", "PCIe 4.0 x16", "PCIe 4.0 x8", "PCIe 4.0 x16"]


def test_rtx4090_workstation(tmp_path: Path) -> None:
    snapshot = probe_fixture("rtx4090_workstation.json", tmp_path)
    [gpu] = snapshot["gpus"]
    assert (gpu["vendor"], gpu["model"], gpu["interface"]) == ("nvidia", "rtx4090", "pcie")
    assert gpu["name"] == "NVIDIA GeForce RTX 4090"
    assert (gpu["slot_native_interface"], gpu["actual_interface"]) == ("PCIe 4.0 x16",) * 2
    assert gpu["power_limit_w"] == 450 and gpu["pci_subsystem_id"] == "88eb1043"


def test_mixed_vendor_box_reads_amd_from_sysfs_and_skips_what_is_no_gpu(tmp_path: Path) -> None:
    gpus = probe_fixture("mixed_vendor.json", tmp_path)["gpus"]
    assert [(g["slot_index"], g["vendor"], g["model"]) for g in gpus] == [
        (0, "nvidia", "rtxa6000"), (1, "nvidia", "l4"), (2, "amd", "mi210")]
    assert gpus[0]["power_limit_w"] is None  # NVML said Not Supported
    amd = gpus[2]
    assert amd["name"] == "AMD Instinct MI210" and amd["pci_subsystem_id"] == "0c341002"
    assert amd["vram_bytes"] == 68702699520
    assert (amd["slot_native_interface"], amd["actual_interface"]) == ("PCIe 4.0 x16",) * 2


class _Failing:
    """NVML that opens but fails on the first question."""

    def device_count(self) -> int:
        raise NvmlUnavailable("Unknown Error")

    def cuda_driver_version(self) -> int:
        return 12040


def _no_library() -> Nvml:
    raise ImportError("libnvidia-ml.so.1: cannot open shared object file")


@pytest.mark.parametrize("opener", [
    lambda: RecordedNvml(answers("driver_not_loaded.json")),
    _no_library,
    _Failing,
])
def test_nvml_failure_means_zero_gpus_and_one_warning(opener: Any, tmp_path: Path) -> None:
    prober = Prober("provider-a", "node-1", open_nvml=opener, pci_devices=tmp_path,
                    read_host=lambda: HOST)
    result = prober.probe()
    assert result.snapshot["gpus"] == []
    assert len(result.warnings) == 1 and "NVML unavailable" in result.warnings[0]
    assert result.snapshot["software"]["gpu_driver_version"] is None
    assert validation.problems("HardwareSnapshotted", result.snapshot) == []


def test_probe_of_this_host_without_nvml_is_valid() -> None:
    result = Prober("provider-a", "node-1", open_nvml=None).probe()
    assert result.warnings == []
    assert codec.describe_invalid("HardwareSnapshotted", result.snapshot) is None
    assert validation.problems("HardwareSnapshotted", result.snapshot) == []
    assert result.snapshot["system"]["architecture"] in ("amd64", "arm64")


def test_allocatable_defaults_to_host_totals_and_options_override(tmp_path: Path) -> None:
    doc = answers("rtx4090_workstation.json")
    default = prober_for(doc, tmp_path / "a").probe().snapshot
    assert default["allocatable"] == {"cpu_millicores": 192_000, "memory_bytes": 1536 * GiB,
                                      "ephemeral_storage_bytes": 3840 * GiB}
    assert default["storage"] == []
    options = ProbeOptions.from_env({
        "HWLEDGER_ALLOCATABLE_CPU_MILLICORES": "190000",
        "HWLEDGER_ALLOCATABLE_MEMORY": "1400Gi",
        "HWLEDGER_STORAGE_CLASSES": "beta3=7000Gi, default=2T"})
    snapshot = prober_for(doc, tmp_path / "b", options).probe().snapshot
    assert snapshot["allocatable"] == {"cpu_millicores": 190_000, "memory_bytes": 1400 * GiB,
                                       "ephemeral_storage_bytes": 3840 * GiB}
    assert snapshot["storage"] == [{"class": "beta3", "bytes": 7000 * GiB},
                                   {"class": "default", "bytes": 2 * 10**12}]


def test_an_allocatable_of_minus_one_is_unlimited(tmp_path: Path) -> None:
    options = ProbeOptions.from_env({"HWLEDGER_ALLOCATABLE_CPU_MILLICORES": "-1",
                                     "HWLEDGER_ALLOCATABLE_MEMORY": " -1 "})
    snapshot = prober_for(answers("h100_sxm_x8.json"), tmp_path, options).probe().snapshot
    assert snapshot["allocatable"]["cpu_millicores"] == -1
    assert snapshot["allocatable"]["memory_bytes"] == -1
    assert validation.problems("HardwareSnapshotted", snapshot) == []


@pytest.mark.parametrize("env", [{"HWLEDGER_ALLOCATABLE_MEMORY": "lots"},
                                 {"HWLEDGER_STORAGE_CLASSES": "beta3"},
                                 {"HWLEDGER_STORAGE_CLASSES": "=5Gi"},
                                 {"HWLEDGER_ALLOCATABLE_MEMORY": "-2"}])
def test_bad_options_are_user_errors(env: dict[str, str]) -> None:
    with pytest.raises(UserError, match="HWLEDGER_"):
        ProbeOptions.from_env(env)


def test_fingerprint_ignores_heartbeats_and_sees_a_gpu_swap(tmp_path: Path) -> None:
    doc = answers("a100_pcie_x4_degraded.json")
    prober = prober_for(doc, tmp_path)
    first, second = prober.probe().snapshot, prober.probe().snapshot
    assert first["event_id"] != second["event_id"]
    assert fingerprint(first) == fingerprint(second)
    doc["devices"][1] = answers("h100_sxm_x8.json")["devices"][0]
    assert fingerprint(prober.probe().snapshot) != fingerprint(first)


def test_pure_helpers() -> None:
    assert architecture_name("x86_64") == "amd64" and architecture_name("aarch64") == "arm64"
    assert cpu_from_cpuinfo("vendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) "
                            "Platinum 8480+\n") == ("Intel(R) Xeon(R) Platinum 8480+", "intel")
    assert cpu_from_cpuinfo("processor\t: 0\nCPU implementer\t: 0x41\n") == (None, "arm")
    assert os_from_release('NAME="Ubuntu"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\n') == \
        "Ubuntu 22.04.4 LTS"
    assert os_from_release("NAME=Alpine\nVERSION=3.19\n") == "Alpine 3.19"
    assert motherboard_name("To Be Filled By O.E.M.", "X570 Taichi") == "X570 Taichi"
    assert motherboard_name(None, "Default string") is None
    assert link_name((5, 16)) == "PCIe 5.0 x16" and link_name((9, 16)) is None
    assert cuda_version_text(12040) == "12.4" and cuda_version_text(11080) == "11.8"
    assert parse_quantity("512Gi", "X") == 512 * GiB and parse_quantity("7", "X") == 7


def test_host_facts_from_recorded_proc_and_dmi(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text(
        "vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core Processor\n")
    (tmp_path / "dmi").mkdir()
    (tmp_path / "dmi" / "board_vendor").write_text("Supermicro\n")
    (tmp_path / "dmi" / "board_name").write_text("H13DSG-O-CPU\n")
    (tmp_path / "os-release").write_text('PRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"\n')
    facts = read_host_facts(tmp_path / "proc", tmp_path / "dmi", tmp_path / "os-release")
    assert (facts.cpu_model, facts.cpu_vendor) == ("AMD EPYC 9654 96-Core Processor", "amd")
    assert facts.motherboard == "Supermicro H13DSG-O-CPU"
    assert facts.os == "Rocky Linux 9.3 (Blue Onyx)"
    assert 0 < facts.cpu_cores <= facts.cpu_threads and facts.ram_bytes > 0


def host_tree(root: Path, doc: dict[str, Any]) -> dict[str, Path]:
    """A recorded host's cpufreq folder, SMBIOS table and PCI tree under `root`."""
    cpufreq = root / "cpufreq"
    cpufreq.mkdir(parents=True)
    for name, text in doc["cpufreq"].items():
        (cpufreq / name).write_text(text + "\n")
    (root / "DMI").write_bytes(bytes.fromhex(doc["dmi_table_hex"]))
    return {"cpufreq": cpufreq, "dmi_table": root / "DMI",
            "pci_devices": sysfs_tree(root / "pci", doc["pci"])}


@pytest.mark.parametrize("name", sorted(p.name for p in HOST_FIXTURES.glob("*.json")))
def test_host_identity_inputs_from_recorded_cpufreq_smbios_and_pci(name: str,
                                                                    tmp_path: Path) -> None:
    doc = json.loads((HOST_FIXTURES / name).read_text("utf-8"))
    facts = read_host_facts(tmp_path / "proc", tmp_path / "dmi", tmp_path / "os-release",
                            **host_tree(tmp_path, doc))
    assert {k: getattr(facts, k) for k in OPTIONAL_SYSTEM_IDENTITY} == doc["expected"]


def test_host_identity_inputs_linux_does_not_expose_are_none(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    facts = read_host_facts(missing, missing, missing, cpufreq=missing, dmi_table=missing,
                            pci_devices=missing)
    assert {k: getattr(facts, k) for k in OPTIONAL_SYSTEM_IDENTITY} == dict.fromkeys(
        OPTIONAL_SYSTEM_IDENTITY)
    table = bytes.fromhex(json.loads((HOST_FIXTURES / "xeon_8480_h100_sxm.json").read_text(
        "utf-8"))["dmi_table_hex"])
    assert memory_speed_mhz(table[:40]) is None and memory_speed_mhz(b"\x11\x01") is None
    assert clock_mhz("") is None and clock_mhz("n/a") is None and clock_mhz("0") is None
    assert largest_bar_mb("") is None and largest_bar_mb("garbage\nnot a bar\n") is None


def test_host_identity_inputs_enter_the_snapshot_and_its_system_id(tmp_path: Path) -> None:
    plain = prober_for(answers("h100_sxm_x8.json"), tmp_path / "a").probe().snapshot
    rich_host = replace(HOST, cpu_base_clock_mhz=2000, cpu_peak_clock_mhz=3800,
                        memory_speed_mhz=4800, bar_size_mb=131072)
    rich = Prober("provider-a", "node-1", open_nvml=lambda: RecordedNvml(
        answers("h100_sxm_x8.json")), pci_devices=tmp_path / "none",
        read_host=lambda: rich_host).probe().snapshot
    assert (rich["system"]["cpu_base_clock_mhz"], rich["system"]["bar_size_mb"]) == (2000,
                                                                                  131072)
    assert plain["system"]["cpu_base_clock_mhz"] is None
    assert codec.describe_invalid("HardwareSnapshotted", rich) is None
    assert system_hardware_id(rich["system"], rich["gpus"]) != system_hardware_id(
        plain["system"], plain["gpus"])


def test_node_id_is_stable_and_overridable(tmp_path: Path) -> None:
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    derived = node_id(None, tmp_path / "home", machine_id)
    assert derived == node_id(None, tmp_path / "home", machine_id)
    assert "3d1219c7" not in derived
    assert node_id("gpu-node-7", tmp_path / "home", machine_id) == "gpu-node-7"
    missing = tmp_path / "no-machine-id"
    generated = node_id(None, tmp_path / "home", missing)
    assert generated == node_id(None, tmp_path / "home", missing)
    assert (tmp_path / "home" / "node_id").read_text().strip() == generated
    assert generated != derived


def test_probe_command_prints_a_publishable_payload(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HWLEDGER_HOME", str(tmp_path))
    monkeypatch.setenv("HWLEDGER_NODE_ID", "node-cli")
    assert main(["probe", "--no-nvml"]) == 0
    printed = json.loads(capsys.readouterr().out)
    printed["occurred_at"] = parse_time(printed["occurred_at"])
    assert printed["node_id"] == "node-cli" and printed["provider_id"] == "unregistered"
    assert codec.describe_invalid("HardwareSnapshotted", printed) is None
    assert main(["probe", "--no-nvml", "--table"]) == 0
    assert "node-cli" in capsys.readouterr().out
