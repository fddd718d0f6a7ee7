"""`hwledger db seed`: the seed files written into the reference tables (`interface_type` and
the GPU spec catalog's), idempotently, by upserts keyed on each table's natural key.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from hwledger.seeds import (
    load_interface_types,
)
from hwledger.seeds.spec_catalog import GpuSpecCatalog, load_gpu_specs


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
