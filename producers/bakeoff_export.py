"""Read-model rows -> bakeoff files: the pure half of `hwledger export` (docs/bakeoff.md).

The statements of `bakeoff_reads` read the read model (a `ReadModel`); the functions here turn
its rows into bakeoff documents: one self-contained run file per finished run,
one hardware-snapshot file per system (GPUs embedded, each with its `spec` from the GPU spec
catalog, `schemas.gpu_specs`), the interface_type seed. Audit fields
follow bakeoff: `created_at` is the record's first time in the ledger (and an existing file's
is kept), `updated_at` is the write time, and a record whose content is unchanged is not
rewritten.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any

from hwledger.producers.bakeoff import STATUSES
from hwledger.producers.bakeoff_reads import METRICS
from hwledger.schemas.gpu_specs import PciId, spec_documents
from hwledger.schemas.identity import OPTIONAL_SYSTEM_IDENTITY, SOFTWARE_FIELDS
from hwledger.schemas.units import GiB, MiB

SCHEMA_VERSION = 1
AUDIT_FIELDS = ("created_at", "updated_at")
RUN_STATUSES = {hwledger: bakeoff for bakeoff, hwledger in STATUSES.items()}
OTHER_RUN_STATUS = "failed"
"""bakeoff's run_status of a hwledger status it has no word for (`cancelled`, ...); the file's
`status` keeps hwledger's."""
SEED_DESCRIPTION = ("GPU host-interface bus types, as hwledger's interface_type table holds "
                    "them (exported by hwledger).")
MAX_FILE_NAME = 255
_SAFE = re.compile(r"[A-Za-z0-9_.-]")
Row = Mapping[str, Any]
Document = dict[str, Any]
Specs = Mapping[PciId, Document]
NO_SPECS: Specs = MappingProxyType({})


class ExportError(ValueError):
    """A record that cannot be written as a bakeoff file; the message says why."""


def file_name(key: str, suffix: str = ".json") -> str:
    """`<key><suffix>` with every byte outside `[A-Za-z0-9_.-]`, and a leading `.`, written as
    `%XX` (so `a/b` is `a%2Fb.json`); distinct keys give distinct names."""
    escaped = "".join(c if _SAFE.fullmatch(c) else "".join(f"%{b:02X}" for b in c.encode())
                      for c in key)
    if escaped.startswith("."):
        escaped = "%2E" + escaped[1:]
    name = f"{escaped}{suffix}"
    if len(name) > MAX_FILE_NAME:
        raise ExportError(f"{key[:40]!r}: the escaped file name is longer than "
                          f"{MAX_FILE_NAME} characters")
    return name


def audit_time(value: datetime) -> str:
    """bakeoff's audit time: UTC, whole seconds, `YYYY-MM-DDTHH:MM:SSZ`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exact_time(value: datetime | None) -> str | None:
    """A ledger time to the microsecond (`...SS.ffffffZ`, `...SSZ` on a whole second)."""
    if value is None:
        return None
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if utc.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _hex(value: str | None) -> str | None:
    return None if value is None else f"0x{value}"


def _gpu(gpu: Row, specs: Specs) -> Document:
    subsystem = gpu["pci_subsystem_id"]
    return {
        "slot_index": gpu["slot_index"], "gpu_model": gpu["name"],
        "vram_mb": _number(gpu["vram_bytes"] / MiB),
        "pci_vendor_id": _hex(gpu["pci_vendor_id"]), "pci_device_id": _hex(gpu["pci_device_id"]),
        "pci_subsystem_device_id": _hex(subsystem[:4]) if subsystem else None,
        "pci_subsystem_vendor_id": _hex(subsystem[4:]) if subsystem else None,
        "slot_native_interface": gpu["slot_native_interface"],
        "actual_interface": gpu["actual_interface"],
        "spec": specs.get((gpu["pci_vendor_id"], gpu["pci_device_id"])),
    }


def hardware_block(system: Row, gpus: Sequence[Row], specs: Specs = NO_SPECS) -> Document:
    """A system_hardware row and its GPU links as bakeoff's fuller hardware block, each GPU
    with its catalog spec (None when the catalog has no such model)."""
    return {
        "cpu_model": system["cpu_model"], "cpu_cores": system["cpu_cores"],
        "cpu_threads": system["cpu_threads"], "ram_gb": _number(system["ram_bytes"] / GiB),
        "architecture": system["architecture"], "motherboard": system["motherboard"],
        **{f: system[f] for f in OPTIONAL_SYSTEM_IDENTITY if f != "bar_size_mb"},
        "bios_notes": {"bar_size_mb": system["bar_size_mb"]},
        "gpus": [_gpu(g, specs) for g in sorted(gpus, key=lambda g: int(g["slot_index"]))],
    }


def snapshot_document(system: Row, gpus: Sequence[Row], specs: Specs = NO_SPECS) -> Document:
    """`hardware-snapshot/<system_hardware_id>.json`: the system fields, GPUs embedded."""
    return {"schema_version": SCHEMA_VERSION, **hardware_block(system, gpus, specs)}


def run_document(run: Row, system: Row, gpus: Sequence[Row], software: Row,
                 gpu_slots: Sequence[int], specs: Specs = NO_SPECS) -> Document:
    """`runs/<run_id>.json` of a finished run: run fields, status, metrics, the hardware and
    software block with every GPU (each with the snapshot's power limit) and the slots used.
    `run` is a runs row with its snapshot's `gpu_power_limits_w` and the metrics columns."""
    power = run["gpu_power_limits_w"] or {}
    block = hardware_block(system, gpus, specs)
    for gpu in block["gpus"]:
        gpu["power_limit_w"] = power.get(str(gpu["slot_index"]))
    peak = run["peak_vram_bytes"]
    block.update({field: software[field] for field in SOFTWARE_FIELDS})
    block.update({"peak_vram_mb": None if peak is None else _number(peak / MiB),
                  "power_limit_w": run["power_limit_w"],
                  "measured_tflops": run["measured_tflops"]})
    models = run["model_ref"]
    return {
        "schema_version": SCHEMA_VERSION, "run_id": run["run_id"],
        "provider_id": run["provider_id"], "node_id": run["node_id"],
        "run_status": RUN_STATUSES.get(run["status"], OTHER_RUN_STATUS),
        "status": run["status"],
        "timestamp": run["started_at"].astimezone(UTC).strftime("%Y-%m-%dT%H-%M-%S"),
        "started_at": exact_time(run["started_at"]),
        "finished_at": exact_time(run["finished_at"]),
        "config": {"run": {"name": run["run_id"]},
                   **({"models": models.split(",")} if models else {})},
        "task_ref": run["task_ref"],
        "resources": {"cpu_millicores": run["cpu_millicores"],
                      "memory_bytes": run["memory_bytes"],
                      "ephemeral_storage_bytes": run["ephemeral_storage_bytes"],
                      "gpu_slots": sorted(gpu_slots)},
        "metrics": {m: run[m] for m in METRICS},
        "hardware": block,
    }


def seed_document(rows: Sequence[Row]) -> Document:
    """`seeds/interface_types.json` in bakeoff's seed shape, every interface_type column."""
    return {"schema_version": SCHEMA_VERSION, "table": "interface_type",
            "description": SEED_DESCRIPTION,
            "rows": [{k: v for k, v in r.items() if k != "interface_type_id"}
                     for r in sorted(rows, key=lambda r: int(r["interface_type_id"]))]}


def audited(content: Document, existing: Any, created: datetime, now: datetime
            ) -> Document | None:
    """`content` with its audit fields, or None when `existing` (the file's current JSON, None
    when absent) already holds the same content: an existing file keeps its `created_at`."""
    if isinstance(existing, Mapping):
        if {k: v for k, v in existing.items() if k not in AUDIT_FIELDS} == content:
            return None
        kept = existing.get("created_at")
        if isinstance(kept, str):
            return {**content, "created_at": kept, "updated_at": audit_time(now)}
    return {**content, "created_at": audit_time(created), "updated_at": audit_time(now)}


def render(document: Document) -> str:
    """bakeoff's JSON: sorted keys, 2-space indent, one trailing newline."""
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class ReadModel:
    """The rows an export reads, one list per statement of `bakeoff_reads`."""

    runs: Sequence[Row]
    gpu_usage: Sequence[Row]
    systems: Sequence[Row]
    system_hardware: Sequence[Row]
    gpu_links: Sequence[Row]
    software: Sequence[Row]
    interface_types: Sequence[Row]
    gpu_specs: Sequence[Row]
    gpu_tflops: Sequence[Row]
    compute_formats: Sequence[str]


@dataclass(frozen=True)
class Planned:
    """One file to export: its path under the export directory, its content (no audit fields)
    and the ledger time it was first true (its `created_at` when the file is new)."""

    path: PurePosixPath
    content: Document
    created: datetime


def planned_files(model: ReadModel, since: datetime | None
                  ) -> tuple[list[Planned], list[tuple[str, str]]]:
    """The files of an export, one bakeoff data directory per provider
    (`<provider>/runs/<run_id>.json`, `<provider>/hardware-snapshot/<id>.json`,
    `<provider>/seeds/interface_types.json`), and the records left out (what, why). A system
    is exported when the provider snapshotted it at or after `since` or an exported run
    ran on it."""
    hardware = {str(h["system_hardware_id"]): h for h in model.system_hardware}
    specs = spec_documents(model.gpu_specs, model.gpu_tflops, model.compute_formats)
    software = {str(s["system_software_id"]): s for s in model.software}
    links: dict[str, list[Row]] = defaultdict(list)
    for link in model.gpu_links:
        links[str(link["system_hardware_id"])].append(link)
    slots: dict[tuple[str, str], list[int]] = defaultdict(list)
    for use in model.gpu_usage:
        slots[(use["provider_id"], use["run_id"])].append(int(use["slot_index"]))
    planned: list[Planned] = []
    skipped: list[tuple[str, str]] = []
    folders: dict[str, PurePosixPath] = {}
    first_seen: dict[str, datetime] = {}
    ran_on = {(r["provider_id"], str(r["system_hardware_id"])) for r in model.runs}
    for seen in model.systems:
        provider, system = seen["provider_id"], str(seen["system_hardware_id"])
        try:
            folder = folders.setdefault(provider, PurePosixPath(file_name(provider, "")))
        except ExportError as exc:
            skipped.append((f"provider {provider[:40]!r}", str(exc)))
            continue
        first_seen[provider] = min(first_seen.get(provider, seen["first_seen_at"]),
                                   seen["first_seen_at"])
        if since is None or seen["last_seen_at"] >= since or (provider, system) in ran_on:
            planned.append(Planned(folder / "hardware-snapshot" / f"{system}.json",
                                   snapshot_document(hardware[system], links[system], specs),
                                   seen["first_seen_at"]))
    for run in model.runs:
        provider, system = run["provider_id"], str(run["system_hardware_id"])
        if provider not in folders:
            continue
        try:
            name = file_name(run["run_id"])
        except ExportError as exc:
            skipped.append((f"run {run['run_id'][:40]!r} of {provider!r}", str(exc)))
            continue
        planned.append(Planned(
            folders[provider] / "runs" / name,
            run_document(run, hardware[system], links[system],
                         software[str(run["system_software_id"])],
                         slots[(provider, run["run_id"])], specs),
            run["started_at"]))
    seed = seed_document(model.interface_types)
    planned += [Planned(folders[p] / "seeds" / "interface_types.json", seed, at)
                for p, at in first_seen.items()]
    return planned, skipped
