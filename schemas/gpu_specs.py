"""The GPU spec catalog as readers show it: the statements that read the catalog tables of
migration 0008 and the pure function that turns their rows into one `spec` document per GPU
model (PCI vendor:device id). `GET /v1/hardware/{id}`, `GET /v1/runs/{id}` and the bakeoff
export embed the same document in each GPU entry, so the catalog has one shape everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, select, true, tuple_
from sqlalchemy.sql.elements import ColumnElement

from hwledger.schemas import tables

Row = Mapping[Any, Any]
PciId = tuple[str, str]
SOURCE_FIELDS = ("kind", "title", "url")


def _models(spec_table: Any, gpus: Sequence[PciId] | None) -> ColumnElement[bool]:
    if gpus is None:
        return true()
    return tuple_(spec_table.c.pci_vendor_id, spec_table.c.pci_device_id).in_(list(gpus))


def _source_columns() -> list[Any]:
    s = tables.tflops_source
    return [s.c.name.label("source"), *(s.c[f].label(f"source_{f}") for f in SOURCE_FIELDS)]


def specs_statement(gpus: Sequence[PciId] | None = None) -> Select[Any]:
    """gpu_spec rows (of the models `gpus` names, else all) with their lookup names and the
    source of their figures."""
    g, a, v, s = tables.gpu_spec, tables.gpu_architecture, tables.vram_type, tables.tflops_source
    return (select(g.c.pci_vendor_id, g.c.pci_device_id, a.c.name.label("architecture"),
                   v.c.name.label("vram_type"), g.c.memory_bus_width_bits,
                   g.c.memory_data_rate_gbps, g.c.memory_bandwidth_gbps, g.c.boost_clock_mhz,
                   g.c.tdp_w, g.c.note, *_source_columns())
            .join(a, a.c.gpu_architecture_id == g.c.gpu_architecture_id)
            .join(v, v.c.vram_type_id == g.c.vram_type_id)
            .join(s, s.c.tflops_source_id == g.c.tflops_source_id)
            .where(_models(g, gpus))
            .order_by(g.c.pci_vendor_id, g.c.pci_device_id))


def tflops_statement(gpus: Sequence[PciId] | None = None) -> Select[Any]:
    """gpu_tflops rows (of the models `gpus` names, else all) with format and source names."""
    t, f, s = tables.gpu_tflops, tables.compute_formats, tables.tflops_source
    return (select(t.c.pci_vendor_id, t.c.pci_device_id, f.c.name.label("compute_format"),
                   t.c.dense_tflops, t.c.sparse_tflops, *_source_columns())
            .join(f, f.c.compute_format_id == t.c.compute_format_id)
            .join(s, s.c.tflops_source_id == t.c.tflops_source_id)
            .where(_models(t, gpus))
            .order_by(t.c.pci_vendor_id, t.c.pci_device_id, t.c.compute_format_id))


def formats_statement() -> Select[Any]:
    """The compute format names in catalog order."""
    f = tables.compute_formats
    return select(f.c.name).order_by(f.c.compute_format_id)


def _source(row: Row) -> dict[str, Any]:
    return {f: row[f"source_{f}"] for f in SOURCE_FIELDS}


def spec_documents(specs: Sequence[Row], tflops: Sequence[Row], formats: Sequence[str]
                   ) -> dict[PciId, dict[str, Any]]:
    """(pci_vendor_id, pci_device_id) -> its spec: the gpu_spec figures, `peak_tflops` with
    every format of `formats` ({dense, sparse, source} or None where the model has no such
    path) and `sources`, every source a figure names (name -> kind, title, url)."""
    found: dict[PciId, dict[str, Any]] = {}
    for row in specs:
        found[(row["pci_vendor_id"], row["pci_device_id"])] = {
            "architecture": row["architecture"], "vram_type": row["vram_type"],
            "memory_bus_width_bits": row["memory_bus_width_bits"],
            "memory_data_rate_gbps": row["memory_data_rate_gbps"],
            "memory_bandwidth_gbps": row["memory_bandwidth_gbps"],
            "boost_clock_mhz": row["boost_clock_mhz"], "tdp_w": row["tdp_w"],
            "note": row["note"], "source": row["source"],
            "peak_tflops": dict.fromkeys(formats),
            "sources": {row["source"]: _source(row)},
        }
    for row in tflops:
        spec = found[(row["pci_vendor_id"], row["pci_device_id"])]
        spec["peak_tflops"][row["compute_format"]] = {
            "dense": row["dense_tflops"], "sparse": row["sparse_tflops"],
            "source": row["source"]}
        spec["sources"][row["source"]] = _source(row)
    return found
