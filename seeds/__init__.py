"""Reference data shipped with hwledger and its loaders (the GPU spec catalog's in
`spec_catalog`, writing it all into the database in `seeding`).

`interface_types.json` (PCIe generations and widths, SXM, NVLink, ...) seeds the
`interface_type` table; `gpu_models.json` maps PCI vendor:device ids to Akash-style GPU tokens
and is read by the token rules; `gpu_specs.json` is the GPU spec catalog (architecture, memory,
clocks, TDP, peak TFLOPS per compute format, each figure's source) that seeds the tables of
migration 0008. `demo_fleet.jsonl` is the demo's event history. Every file
carries `schema_version`; a malformed file raises SeedError naming the file and the problem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

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


Row = TypeVar("Row", bound="DataclassInstance")
"""A seed file's row type: a dataclass whose fields are exactly each item's keys."""


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


@cache
def gpu_catalog() -> dict[tuple[str, str], GpuModel]:
    """The shipped catalog keyed by lowercase (pci_vendor_id, pci_device_id) hex strings."""
    return {(r.pci_vendor_id, r.pci_device_id): r for r in load_gpu_models()}


@cache
def interface_type_ids() -> dict[str, int]:
    """interface_type name -> id, for the projector's link rows."""
    return {r.name: r.interface_type_id for r in load_interface_types()}


