"""Seed files: shape, formulas, coverage, and one-line errors for malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwledger.seeds import SeedError, load_gpu_models, load_interface_types
from hwledger.seeds.seeding import catalog_rows
from hwledger.seeds.spec_catalog import load_gpu_specs

SPECS = Path(__file__).parents[2] / "seeds" / "gpu_specs.json"


def test_pcie_rows_follow_rate_x_lanes_x_2_over_8() -> None:
    pcie = [r for r in load_interface_types() if r.family == "pcie"]
    assert pcie
    for row in pcie:
        assert row.lane_rate_gts is not None and row.lanes is not None
        assert row.bidirectional_gbps == row.lane_rate_gts * row.lanes * 2 / 8, row.name


def test_interface_types_cover_the_required_names() -> None:
    names = {r.name for r in load_interface_types()}
    required = {f"PCIe {g} x{w}" for g in ("1.0", "2.0", "3.0", "4.0", "5.0")
                for w in (1, 4, 8, 16)}
    required |= {"PCIe 6.0 x16", "SXM2", "SXM4", "SXM5", "NVLink 2", "NVLink 3", "NVLink 4",
                 "OAM", "Thunderbolt 3", "Thunderbolt 4", "USB4", "OCuLink 2.0", "Integrated"}
    assert required <= names


def test_gpu_catalog_covers_the_required_models() -> None:
    models = {r.model for r in load_gpu_models()}
    assert {"h200", "h100", "a100", "l40s", "l40", "l4", "a10", "a40", "a30", "t4", "v100",
            "rtx6000ada", "rtxa6000", "rtx5090", "rtx4090", "rtx3090", "mi300x", "mi250x",
            "mi210"} <= models
    h100 = {(r.interface, r.name) for r in load_gpu_models() if r.model == "h100"}
    assert {i for i, _ in h100} == {"sxm", "pcie"} and any("NVL" in n for _, n in h100)
    a100 = {(r.interface, r.vram_bytes // 1024**3) for r in load_gpu_models() if r.model == "a100"}
    assert a100 == {("sxm", 40), ("sxm", 80), ("pcie", 40), ("pcie", 80)}


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON at line 1"),
    ('{"schema_version": 2, "interface_types": []}', "schema_version 2 is not supported"),
    ('{"schema_version": 1}', "missing list 'interface_types'"),
    ('{"schema_version": 1, "interface_types": [{"name": "x"}]}', "must have exactly the keys"),
    ('{"schema_version": 1, "interface_types": [{"interface_type_id": 1, "name": "PCIe 4.0 x16",'
     ' "family": "pcie", "lane_rate_gts": 16, "lanes": 16, "bidirectional_gbps": 32}]}',
     "rate x lanes x 2 / 8"),
])
def test_malformed_seed_file_gives_one_line_error(tmp_path: Path, content: str,
                                                  message: str) -> None:
    path = tmp_path / "interface_types.json"
    path.write_text(content)
    with pytest.raises(SeedError, match=message) as info:
        load_interface_types(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_seed_files_carry_schema_version() -> None:
    root = Path(__file__).parents[2] / "seeds"
    for name in ("interface_types.json", "gpu_models.json", "gpu_specs.json"):
        assert json.loads((root / name).read_text())["schema_version"] == 1


def test_every_catalogued_gpu_model_has_a_spec_with_every_compute_format() -> None:
    catalog = load_gpu_specs()
    models = {(m.pci_vendor_id, m.pci_device_id) for m in load_gpu_models()}
    assert {(s.pci_vendor_id, s.pci_device_id) for s in catalog.specs} == models
    formats = [f.name for f in catalog.compute_formats]
    assert formats == ["fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "fp4", "int8"]
    for spec in catalog.specs:
        assert list(spec.dense_tflops) == formats
        assert spec.dense_tflops["fp32"] and spec.dense_tflops["fp16"], spec.pci_device_id


def test_memory_bandwidth_is_bus_width_x_data_rate_over_8() -> None:
    for spec in load_gpu_specs().specs:
        formula = spec.memory_bus_width_bits * spec.memory_data_rate_gbps / 8
        assert abs(spec.memory_bandwidth_gbps - formula) <= 0.01 * formula, spec.pci_device_id


def test_tensor_figures_are_consistent() -> None:
    """sparse = 2 x dense; tf32 = fp16 / 2 and fp16 = bf16 on the matrix units that run
    them (bf16 is half rate on CDNA 1 only); a figure from elsewhere names its source."""
    catalog = load_gpu_specs()
    for spec in catalog.specs:
        dense = {f: v for f, v in spec.dense_tflops.items() if v is not None}
        for name, sparse in spec.sparse_tflops.items():
            assert abs(sparse - 2 * dense[name]) <= 0.015 * sparse, (spec.pci_device_id, name)
        if "tf32" in dense:
            assert abs(dense["tf32"] - dense["fp16"] / 2) <= 0.015 * dense["tf32"]
        if "bf16" in dense:
            ratio = 2 if spec.architecture == "CDNA" else 1
            assert dense["fp16"] == ratio * dense["bf16"], spec.pci_device_id
        assert all(v > 0 for v in dense.values()), spec.pci_device_id


def test_known_figures_of_the_h100_sxm_and_the_mi300x() -> None:
    specs = {(s.pci_vendor_id, s.pci_device_id): s for s in load_gpu_specs().specs}
    h100, mi300x = specs[("10de", "2330")], specs[("1002", "74a1")]
    assert (h100.architecture, h100.vram_type, h100.memory_bus_width_bits, h100.tdp_w) == (
        "Hopper", "HBM3", 5120, 700)
    assert (h100.dense_tflops["fp16"], h100.sparse_tflops["fp16"], h100.dense_tflops["fp4"]) \
        == (989.5, 1979, None)
    assert (mi300x.memory_bandwidth_gbps, mi300x.dense_tflops["fp8"]) == (5300, 2614.9)


def test_catalog_rows_name_every_figure_s_source() -> None:
    catalog = load_gpu_specs()
    sources = {s.name: s.tflops_source_id for s in catalog.sources}
    rows = catalog_rows(catalog)
    tflops = [r for table, _, r in rows if table == "gpu_tflops"]
    assert len(tflops) == sum(v is not None for s in catalog.specs
                              for v in s.dense_tflops.values())
    l40s = {r["compute_format_id"]: r["tflops_source_id"] for r in tflops
            if r["pci_device_id"] == "26b9"}
    assert l40s[1] == sources["derived-fp64-rate"] and l40s[4] == sources["nvidia-l40s"]


def _spec_file(tmp_path: Path, **change: object) -> Path:
    doc = json.loads(SPECS.read_text())
    doc["gpu_specs"][0].update(change)
    path = tmp_path / "gpu_specs.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(("change", "message"), [
    ({"memory_bandwidth_gbps": 4000}, "is not bus width x data rate / 8 = 4800"),
    ({"sparse_tflops": {"fp16": 1500}}, "sparse_tflops 'fp16' 1500 is not 2 x dense"),
    ({"sparse_tflops": {"fp4": 10}}, "sparse_tflops 'fp4' has no dense_tflops figure"),
    ({"dense_tflops": {"fp16": 1}}, "dense_tflops must name exactly the compute formats"),
    ({"architecture": "Rubin"}, "unknown architecture 'Rubin'"),
    ({"format_sources": {"fp64": "a-blog"}}, "format_sources 'fp64': unknown source 'a-blog'"),
])
def test_a_spec_that_breaks_a_rule_is_refused_in_one_line(tmp_path: Path, change: dict[str, object],
                                                          message: str) -> None:
    path = _spec_file(tmp_path, **change)
    with pytest.raises(SeedError, match=message) as info:
        load_gpu_specs(path)
    assert f"{path}: 10de:2335:" in str(info.value) and "\n" not in str(info.value)
