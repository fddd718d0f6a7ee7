"""The GPU spec catalog (`gpu_specs.json`): its row types, the checks that bind its figures
(bandwidth = bus width x data rate, sparsity = 2x dense, every figure naming a known source),
and its loader `load_gpu_specs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hwledger.seeds import (
    SeedError,
    _document,
    _items,
    _unique,
)


@dataclass(frozen=True)
class GpuArchitecture:
    gpu_architecture_id: int
    name: str
    vendor: str


@dataclass(frozen=True)
class VramType:
    vram_type_id: int
    name: str


@dataclass(frozen=True)
class ComputeFormat:
    compute_format_id: int
    name: str
    bits: int
    kind: str


@dataclass(frozen=True)
class TflopsSource:
    tflops_source_id: int
    name: str
    kind: str
    title: str
    url: str | None


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model's figures; `source` names the tflops_source of all of them except the
    TFLOPS figures `format_sources` names another for. `dense_tflops` has every compute
    format (None: no such path); `sparse_tflops` only formats with a structured-sparsity
    figure."""

    pci_vendor_id: str
    pci_device_id: str
    architecture: str
    vram_type: str
    memory_bus_width_bits: int
    memory_data_rate_gbps: float
    memory_bandwidth_gbps: float
    boost_clock_mhz: int
    tdp_w: int
    source: str
    format_sources: dict[str, str]
    dense_tflops: dict[str, float | None]
    sparse_tflops: dict[str, float]
    note: str | None


@dataclass(frozen=True)
class GpuSpecCatalog:
    """`gpu_specs.json`: the lookup rows and the per-model specs that reference them."""

    architectures: tuple[GpuArchitecture, ...]
    vram_types: tuple[VramType, ...]
    compute_formats: tuple[ComputeFormat, ...]
    sources: tuple[TflopsSource, ...]
    specs: tuple[GpuSpec, ...]


BANDWIDTH_TOLERANCE = 0.01
"""memory_bandwidth_gbps may differ this much (relative) from bus width x data rate / 8:
vendors round both the bandwidth and the data rate they publish."""


SPARSITY_TOLERANCE = 0.015
"""sparse_tflops may differ this much (relative) from 2 x dense_tflops: vendors round the two
figures separately (L40S: 362.05 dense, 733 sparse)."""


SOURCE_KINDS = frozenset({"vendor", "measured", "derived"})


FORMAT_KINDS = frozenset({"float", "integer"})


def _near(value: float, expected: float, tolerance: float) -> bool:
    return abs(value - expected) <= tolerance * expected


def spec_problems(spec: GpuSpec, formats: set[str], sources: set[str],
                  architectures: set[str], vram_types: set[str]) -> list[str]:
    """What is wrong with one spec row: unknown names, missing formats, broken formulas."""
    found = [f"unknown {what} {value!r}" for what, value, known in (
        ("architecture", spec.architecture, architectures),
        ("vram_type", spec.vram_type, vram_types), ("source", spec.source, sources))
        if value not in known]
    if set(spec.dense_tflops) != formats:
        found.append(f"dense_tflops must name exactly the compute formats {sorted(formats)}")
    present = {f: v for f, v in spec.dense_tflops.items() if v is not None}
    found += [f"{field} {name!r} has no dense_tflops figure" for field, names in (
        ("sparse_tflops", spec.sparse_tflops), ("format_sources", spec.format_sources))
        for name in names if name not in present]
    found += [f"format_sources {f!r}: unknown source {s!r}"
              for f, s in spec.format_sources.items() if s not in sources]
    found += [f"dense_tflops {f!r} must be positive" for f, v in present.items() if v <= 0]
    bandwidth = spec.memory_bus_width_bits * spec.memory_data_rate_gbps / 8
    if not _near(spec.memory_bandwidth_gbps, bandwidth, BANDWIDTH_TOLERANCE):
        found.append(f"memory_bandwidth_gbps {spec.memory_bandwidth_gbps} is not bus width x "
                     f"data rate / 8 = {bandwidth:g}")
    found += [f"sparse_tflops {f!r} {sparse} is not 2 x dense ({present[f]})"
              for f, sparse in spec.sparse_tflops.items()
              if f in present and not _near(sparse, 2 * present[f], SPARSITY_TOLERANCE)]
    return found


def load_gpu_specs(path: Path | None = None) -> GpuSpecCatalog:
    """The GPU spec catalog, checked: unique ids and names, every reference known, every
    compute format present, bandwidth = bus width x data rate / 8, sparse = 2 x dense."""
    label, doc = _document(path, "gpu_specs.json")
    catalog = GpuSpecCatalog(
        architectures=_items(label, doc, "gpu_architectures", GpuArchitecture),
        vram_types=_items(label, doc, "vram_types", VramType),
        compute_formats=_items(label, doc, "compute_formats", ComputeFormat),
        sources=_items(label, doc, "tflops_sources", TflopsSource),
        specs=_items(label, doc, "gpu_specs", GpuSpec))
    _unique(label, "gpu_architectures", catalog.architectures, "gpu_architecture_id", "name")
    _unique(label, "vram_types", catalog.vram_types, "vram_type_id", "name")
    _unique(label, "compute_formats", catalog.compute_formats, "compute_format_id", "name")
    _unique(label, "tflops_sources", catalog.sources, "tflops_source_id", "name")
    keys = [(s.pci_vendor_id, s.pci_device_id) for s in catalog.specs]
    if len(set(keys)) != len(keys):
        raise SeedError(f"{label}: gpu_specs: duplicate PCI vendor:device id")
    for source in catalog.sources:
        if source.kind not in SOURCE_KINDS:
            raise SeedError(f"{label}: source {source.name}: kind must be one of "
                            f"{sorted(SOURCE_KINDS)}")
    for fmt in catalog.compute_formats:
        if fmt.kind not in FORMAT_KINDS:
            raise SeedError(f"{label}: compute format {fmt.name}: kind must be one of "
                            f"{sorted(FORMAT_KINDS)}")
    names = ({f.name for f in catalog.compute_formats}, {s.name for s in catalog.sources},
             {a.name for a in catalog.architectures}, {v.name for v in catalog.vram_types})
    for spec in catalog.specs:
        found = spec_problems(spec, *names)
        if found:
            raise SeedError(f"{label}: {spec.pci_vendor_id}:{spec.pci_device_id}: {found[0]}")
    return catalog
