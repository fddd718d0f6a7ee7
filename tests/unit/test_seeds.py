"""Seed files: shape, formulas, coverage, and one-line errors for malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwledger.seeds import SeedError, load_gpu_models, load_interface_types


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
    for name in ("interface_types.json", "gpu_models.json"):
        assert json.loads((root / name).read_text())["schema_version"] == 1
