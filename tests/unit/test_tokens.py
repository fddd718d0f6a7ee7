"""GPU token rules: PCI catalog first, marketing-name rules as the fallback."""

from __future__ import annotations

import pytest

from hwledger.schemas.tokens import (
    COUNT_STEPS,
    GpuIdentity,
    count_step,
    gpu_tokens,
    identify,
    model_token_from_name,
    ram_gib,
    request_token,
)

# (raw NVML/ROCm name, PCI vendor id, PCI device id or None, vendor, model)
DEVICES = [
    ("NVIDIA H100 80GB HBM3", "10de", "2330", "nvidia", "h100"),
    ("NVIDIA H100 PCIe", "10de", "2331", "nvidia", "h100"),
    ("NVIDIA H100 NVL", "10de", "2321", "nvidia", "h100"),
    ("NVIDIA H200", "10de", "2335", "nvidia", "h200"),
    ("NVIDIA GH200 480GB", "10de", "2342", "nvidia", "gh200"),
    ("NVIDIA A100-SXM4-80GB", "10de", "20b2", "nvidia", "a100"),
    ("NVIDIA A100-SXM4-40GB", "10de", "20b0", "nvidia", "a100"),
    ("NVIDIA A100-PCIE-40GB", "10de", "20f1", "nvidia", "a100"),
    ("NVIDIA A100 80GB PCIe", "10de", "20b5", "nvidia", "a100"),
    ("NVIDIA L40S", "10de", "26b9", "nvidia", "l40s"),
    ("NVIDIA L40", "10de", "26b5", "nvidia", "l40"),
    ("NVIDIA L4", "10de", "27b8", "nvidia", "l4"),
    ("NVIDIA A10", "10de", "2236", "nvidia", "a10"),
    ("NVIDIA A10G", "10de", "2237", "nvidia", "a10g"),
    ("NVIDIA A40", "10de", "2235", "nvidia", "a40"),
    ("NVIDIA A30", "10de", "20b7", "nvidia", "a30"),
    ("Tesla T4", "10de", "1eb8", "nvidia", "t4"),
    ("Tesla V100-SXM2-16GB", "10de", "1db1", "nvidia", "v100"),
    ("Tesla V100-PCIE-32GB", "10de", "1db6", "nvidia", "v100"),
    ("NVIDIA RTX 6000 Ada Generation", "10de", "26b1", "nvidia", "rtx6000ada"),
    ("NVIDIA RTX A6000", "10de", "2230", "nvidia", "rtxa6000"),
    ("NVIDIA GeForce RTX 5090", "10de", "2b85", "nvidia", "rtx5090"),
    ("NVIDIA GeForce RTX 4090", "10de", "2684", "nvidia", "rtx4090"),
    ("NVIDIA GeForce RTX 3090", "10de", "2204", "nvidia", "rtx3090"),
    ("AMD Instinct MI300X", "1002", "74a1", "amd", "mi300x"),
    ("AMD Instinct MI250X/MI250", "1002", "740c", "amd", "mi250x"),
    ("AMD Instinct MI210", "1002", "740f", "amd", "mi210"),
    # Not in the catalog: the name rules decide.
    ("NVIDIA GeForce RTX 3090 Ti", "10de", None, "nvidia", "rtx3090ti"),
    ("NVIDIA GeForce RTX 4080 SUPER", "10de", None, "nvidia", "rtx4080super"),
    ("NVIDIA GeForce GTX 1080 Ti", "10de", None, "nvidia", "gtx1080ti"),
    ("NVIDIA TITAN RTX", "10de", None, "nvidia", "titanrtx"),
    ("Quadro RTX 8000", "10de", None, "nvidia", "rtx8000"),
    ("NVIDIA B200", "10de", None, "nvidia", "b200"),
    ("Tesla P100-PCIE-16GB", "10de", None, "nvidia", "p100"),
    ("Tesla K80", None, None, "nvidia", "k80"),
    ("AMD Radeon RX 7900 XTX", "1002", None, "amd", "rx7900xtx"),
    ("AMD Radeon Pro W7900", "1002", None, "amd", "w7900"),
    ("AMD Instinct MI325X", None, None, "amd", "mi325x"),
    ("Intel(R) Arc(TM) A770 Graphics", "8086", None, "intel", "arca770"),
    ("Intel(R) Data Center GPU Max 1550", "8086", None, "intel", "max1550"),
]


@pytest.mark.parametrize(("name", "vendor_id", "device_id", "vendor", "model"), DEVICES)
def test_real_device_names(name: str, vendor_id: str | None, device_id: str | None,
                           vendor: str, model: str) -> None:
    assert identify(name, vendor_id, device_id) == GpuIdentity(vendor, model)


def test_table_has_at_least_30_real_names() -> None:
    assert len(DEVICES) >= 30


def test_catalog_wins_over_the_name() -> None:
    assert identify("Some OEM Name 80GB", "0x10DE", "0x2330") == GpuIdentity("nvidia", "h100")


def test_name_rules_agree_with_catalog_for_catalog_names() -> None:
    for name, _, device_id, _, model in DEVICES:
        if device_id is not None:
            assert model_token_from_name(name) == model, name


def test_inventory_tokens_are_vendor_and_vendor_model_lowercased() -> None:
    assert gpu_tokens("NVIDIA", "H100") == ("nvidia", "nvidia/h100")


@pytest.mark.parametrize(("vendor", "model", "token"), [
    ("nvidia", "A100", "nvidia/a100"),
    ("NVIDIA", "*", "nvidia"),
    ("amd", None, "amd"),
    ("amd", "", "amd"),
])
def test_request_tokens(vendor: str, model: str | None, token: str) -> None:
    assert request_token(vendor, model) == token


def test_count_steps_and_the_step_a_replica_needs() -> None:
    assert COUNT_STEPS[:5] == (1, 2, 4, 8, 16) and COUNT_STEPS[-1] == 65536
    assert [count_step(n) for n in (0, 1, 3, 8, 9, 15, 16, 100, 10**6)] == [
        1, 1, 2, 8, 8, 8, 16, 64, 65536]


def test_gpu_ram_rounds_halves_up_to_whole_gib() -> None:
    gib = 1 << 30
    assert [ram_gib(v) for v in (80 * gib, 80 * gib + gib // 2 - 1, 80 * gib + gib // 2,
                                 40960 * (1 << 20))] == [80, 80, 81, 40]
