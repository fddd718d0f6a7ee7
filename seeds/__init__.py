"""Reference data shipped with hwledger and its loader.

`interface_types.json` (PCIe generations and widths, SXM, NVLink, ...) seeds the
`interface_type` table; `gpu_models.json` maps PCI vendor:device ids to Akash-style GPU tokens
and is read by the token rules; `gpu_specs.json` is the GPU spec catalog (architecture, memory,
clocks, TDP, peak TFLOPS per compute format, each figure's source) that seeds the tables of
migration 0008. `demo_fleet.jsonl` is the demo's event history. Every file
carries `schema_version`; a malformed file raises SeedError naming the file and the problem.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql

SUPPORTED_SCHEMA_VERSION = 1


class SeedError(ValueError):
    """A seed file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class InterfaceType:
    interface_type_id: int
    name: str
    family: str
    lane_rate_gts: float | None
    lanes: int | None
    bidirectional_gbps: float | None


@dataclass(frozen=True)
class GpuModel:
    pci_vendor_id: str
    pci_device_id: str
    vendor: str
    model: str
    name: str
    vram_bytes: int
    interface: str


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


Row = TypeVar("Row", InterfaceType, GpuModel, GpuArchitecture, VramType, ComputeFormat,
              TflopsSource, GpuSpec)
BANDWIDTH_TOLERANCE = 0.01
"""memory_bandwidth_gbps may differ this much (relative) from bus width x data rate / 8:
vendors round both the bandwidth and the data rate they publish."""
SPARSITY_TOLERANCE = 0.015
"""sparse_tflops may differ this much (relative) from 2 x dense_tflops: vendors round the two
figures separately (L40S: 362.05 dense, 733 sparse)."""
SOURCE_KINDS = frozenset({"vendor", "measured", "derived"})
FORMAT_KINDS = frozenset({"float", "integer"})


def read_seed_document(path: Path | None, default_name: str) -> tuple[str, Any]:
    """(label for messages, parsed JSON) of a shipped seed file or of `path`."""
    if path is None:
        label = f"seeds/{default_name}"
        text = resources.files("hwledger.seeds").joinpath(default_name).read_text("utf-8")
    else:
        label = str(path)
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise SeedError(f"{label}: cannot read: {exc.strerror}") from exc
    try:
        return label, json.loads(text)
    except json.JSONDecodeError as exc:
        raise SeedError(f"{label}: not valid JSON at line {exc.lineno}: {exc.msg}") from exc


def _document(path: Path | None, default_name: str) -> tuple[str, dict[str, Any]]:
    label, doc = read_seed_document(path, default_name)
    if not isinstance(doc, dict) or doc.get("schema_version") != SUPPORTED_SCHEMA_VERSION:
        found = doc.get("schema_version") if isinstance(doc, dict) else None
        raise SeedError(
            f"{label}: schema_version {found!r} is not supported (expected "
            f"{SUPPORTED_SCHEMA_VERSION})"
        )
    return label, doc


def _rows(path: Path | None, default_name: str, key: str, row_type: type[Row]) -> tuple[Row, ...]:
    label, doc = _document(path, default_name)
    return _items(label, doc, key, row_type)


def _items(label: str, doc: dict[str, Any], key: str, row_type: type[Row]) -> tuple[Row, ...]:
    items = doc.get(key)
    if not isinstance(items, list):
        raise SeedError(f"{label}: missing list {key!r}")
    wanted = {f.name for f in fields(row_type)}
    rows = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != wanted:
            raise SeedError(f"{label}: {key}[{index}] must have exactly the keys {sorted(wanted)}")
        rows.append(row_type(**item))
    return tuple(rows)


def load_interface_types(path: Path | None = None) -> tuple[InterfaceType, ...]:
    """The interface_type rows, checked: unique ids and names, PCIe bandwidth formula holds."""
    rows = _rows(path, "interface_types.json", "interface_types", InterfaceType)
    label = str(path or "seeds/interface_types.json")
    for attr in ("interface_type_id", "name"):
        values = [getattr(r, attr) for r in rows]
        if len(set(values)) != len(values):
            raise SeedError(f"{label}: duplicate {attr}")
    for row in rows:
        if row.family == "pcie" and (
            row.lane_rate_gts is None
            or row.lanes is None
            or row.bidirectional_gbps != row.lane_rate_gts * row.lanes * 2 / 8
        ):
            raise SeedError(f"{label}: {row.name}: bidirectional_gbps must be rate x lanes x 2 / 8")
    return rows


def load_gpu_models(path: Path | None = None) -> tuple[GpuModel, ...]:
    """The GPU catalog rows, checked for duplicate PCI ids."""
    rows = _rows(path, "gpu_models.json", "gpu_models", GpuModel)
    keys = [(r.pci_vendor_id, r.pci_device_id) for r in rows]
    if len(set(keys)) != len(keys):
        raise SeedError(f"{path or 'seeds/gpu_models.json'}: duplicate PCI vendor:device id")
    return rows


def _unique(label: str, key: str, rows: tuple[Any, ...], *attrs: str) -> None:
    for attr in attrs:
        values = [getattr(r, attr) for r in rows]
        if len(set(values)) != len(values):
            raise SeedError(f"{label}: {key}: duplicate {attr}")


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


@cache
def gpu_catalog() -> dict[tuple[str, str], GpuModel]:
    """The shipped catalog keyed by lowercase (pci_vendor_id, pci_device_id) hex strings."""
    return {(r.pci_vendor_id, r.pci_device_id): r for r in load_gpu_models()}


@cache
def interface_type_ids() -> dict[str, int]:
    """interface_type name -> id, for the projector's link rows."""
    return {r.name: r.interface_type_id for r in load_interface_types()}


def _upsert(cur: psycopg.Cursor[Any], table: str, keys: tuple[str, ...],
            rows: Sequence[dict[str, Any]]) -> int:
    """Insert `rows` (the same columns each) into `table` in one statement, updating a stored
    row with the same `keys` only when a value differs; returns rows changed (0 when every
    stored row is already equal)."""
    names = list(rows[0])
    values = [n for n in names if n not in keys]
    row_params = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(names)))
    statement = sql.SQL(
        "INSERT INTO {table} AS t ({columns}) VALUES {params} ON CONFLICT ({keys}) "
        "DO UPDATE SET {sets} WHERE ({old}) IS DISTINCT FROM ({new})").format(
        table=sql.Identifier(table),
        columns=sql.SQL(", ").join(map(sql.Identifier, names)),
        params=sql.SQL(", ").join([row_params] * len(rows)),
        keys=sql.SQL(", ").join(map(sql.Identifier, keys)),
        sets=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n))
                                for n in values),
        old=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(n)) for n in values),
        new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(n))
                               for n in values))
    cur.execute(statement, [row[n] for row in rows for n in names])
    return cur.rowcount


_DROPPED_FIGURES = """
DELETE FROM gpu_tflops g
WHERE (g.pci_vendor_id, g.pci_device_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
  AND (g.pci_vendor_id, g.pci_device_id, g.compute_format_id) NOT IN (
      SELECT * FROM unnest(%s::text[], %s::text[], %s::smallint[]))
"""
"""The figures of seeded GPUs that the catalog file no longer has."""


def catalog_rows(catalog: GpuSpecCatalog) -> list[tuple[str, tuple[str, ...], dict[str, Any]]]:
    """(table, key columns, row) of every catalog row, lookups before the rows naming them."""
    ids = {"architecture": {a.name: a.gpu_architecture_id for a in catalog.architectures},
           "vram_type": {v.name: v.vram_type_id for v in catalog.vram_types},
           "format": {f.name: f.compute_format_id for f in catalog.compute_formats},
           "source": {s.name: s.tflops_source_id for s in catalog.sources}}
    rows: list[tuple[str, tuple[str, ...], dict[str, Any]]] = []
    for table, key, lookup in (("gpu_architecture", "gpu_architecture_id", catalog.architectures),
                               ("vram_type", "vram_type_id", catalog.vram_types),
                               ("compute_formats", "compute_format_id", catalog.compute_formats),
                               ("tflops_source", "tflops_source_id", catalog.sources)):
        rows += [(table, (key,), asdict(r)) for r in lookup]
    pci = ("pci_vendor_id", "pci_device_id")
    for spec in catalog.specs:
        gpu = {"pci_vendor_id": spec.pci_vendor_id, "pci_device_id": spec.pci_device_id}
        rows.append(("gpu_spec", pci, {
            **gpu, "gpu_architecture_id": ids["architecture"][spec.architecture],
            "vram_type_id": ids["vram_type"][spec.vram_type],
            "memory_bus_width_bits": spec.memory_bus_width_bits,
            "memory_data_rate_gbps": spec.memory_data_rate_gbps,
            "memory_bandwidth_gbps": spec.memory_bandwidth_gbps,
            "boost_clock_mhz": spec.boost_clock_mhz, "tdp_w": spec.tdp_w,
            "tflops_source_id": ids["source"][spec.source], "note": spec.note}))
        rows += [("gpu_tflops", (*pci, "compute_format_id"), {
            **gpu, "compute_format_id": ids["format"][name], "dense_tflops": dense,
            "sparse_tflops": spec.sparse_tflops.get(name),
            "tflops_source_id": ids["source"][spec.format_sources.get(name, spec.source)]})
            for name, dense in spec.dense_tflops.items() if dense is not None]
    return rows


def seed_database(conn: psycopg.Connection[Any], path: Path | None = None,
                  specs_path: Path | None = None) -> int:
    """Upsert the interface_type rows and the GPU spec catalog into the connection's current
    schema; returns rows changed.

    Idempotent: a second load changes nothing (rows are only rewritten when they differ). A
    gpu_tflops row of a seeded GPU whose format the file no longer has is deleted.
    """
    catalog = load_gpu_specs(specs_path)
    rows: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
        ("interface_type", ("interface_type_id",), asdict(r)) for r in load_interface_types(path)]
    rows += catalog_rows(catalog)
    groups: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]] = defaultdict(list)
    for table, keys, row in rows:  # one statement per table, in order (lookups first)
        groups[(table, keys)].append(row)
    kept = groups[("gpu_tflops", ("pci_vendor_id", "pci_device_id", "compute_format_id"))]
    changed = 0
    with conn.cursor() as cur:
        for (table, keys), table_rows in groups.items():
            if table_rows:
                changed += _upsert(cur, table, keys, table_rows)
        cur.execute(_DROPPED_FIGURES, (
            [spec.pci_vendor_id for spec in catalog.specs],
            [spec.pci_device_id for spec in catalog.specs],
            [r["pci_vendor_id"] for r in kept], [r["pci_device_id"] for r in kept],
            [r["compute_format_id"] for r in kept]))
        changed += cur.rowcount
    return changed
