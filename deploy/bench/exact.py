"""`hwledger bench query`'s `exact=true` side: the per-node tables, the answers, and the old
bin-packer measured beside the new one.

`write_nodes` COPYs the synthetic providers' nodes into the normalized tables the `node_free` /
`node_gpus` views read (one GPU kind per node, only its free GPUs installed, the provider's
storage pools on its first node) and their provider_nodes rows, so the bin-packer reads what
`provider_inventory` sums.
`time_exact` times `QueryService.bid_screening(exact=True)` in process (the prefilter batches,
the inventory reads and the bin-packer in one REPEATABLE READ snapshot, no HTTP).
`time_bin_packing` times, per candidate, the inventory read and the placement, with this code
and with the code of BASELINE_COMMIT (the bin-packer and its inventory read before issue 15),
loaded from git by `baseline_modules` for the benchmark only.
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Connection

import hwledger.query
from hwledger.projectors.inventory_sql import INVENTORY_CHUNK, NODE_INVENTORY
from hwledger.query.binpacker import Packing, place
from hwledger.query.group_request import GroupRequest
from hwledger.query.inventory import ProviderNodes
from hwledger.query.limits import BudgetExceeded, TooCostly
from hwledger.query.placement_run import provider_nodes
from hwledger.query.service import QueryService, make_engine

BASELINE_COMMIT = "6f12abf0823be766ff9d43c754bdf5dbefbbedc4"
"""The code before issue 15: greedy bin-packer, one row and object per GPU."""
NAMESPACE = uuid.UUID("6d1b7c52-47a8-4d57-9a0e-95f4a0d1c2b3")
SOFTWARE_ID = uuid.uuid5(NAMESPACE, "software")


def _ids(kind: tuple[Any, ...]) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, repr(kind))


def write_nodes(conn: psycopg.Connection[Any], providers: Iterator[ProviderNodes],
                now: datetime) -> None:
    """COPY every node of `providers` (and the GPU and system rows they need), then write their
    provider_nodes rows with the projector's statement."""
    gpu_kinds: dict[tuple[str, str, int, str], uuid.UUID] = {}
    systems: dict[tuple[uuid.UUID | None, int], uuid.UUID] = {}
    snapshots, nodes, provider_ids = [], [], []
    for provider in providers:
        provider_ids.append(provider.provider_id)
        storage = [{"class": c, "bytes": b} for c, b in provider.persistent.items()]
        for position, node in enumerate(provider.nodes):
            group = node.gpus[0] if node.gpus else None
            gpu_id = None
            if group is not None:
                key = (group.vendor, group.model, group.vram_bytes, group.interface)
                gpu_id = gpu_kinds.setdefault(key, _ids(key))
            count = len(group.slots) if group else 0
            system = systems.setdefault((gpu_id, count), _ids((gpu_id, count)))
            event = uuid.uuid4()
            snapshots.append((event, provider.provider_id, node.node_id, system, SOFTWARE_ID,
                              now, node.cpu_millicores, node.memory_bytes, node.ephemeral_bytes,
                              Jsonb(storage if position == 0 else [])))
            nodes.append((provider.provider_id, node.node_id, event, now, now, now))
    conn.execute("INSERT INTO system_software (system_software_id, os, kernel_version, "
                 "python_version) VALUES (%s, 'bench', 'bench', '3.11')", (SOFTWARE_ID,))
    with conn.cursor() as cur:
        _copy(cur, "gpu_hardware (gpu_hardware_id, vendor, model, name, pci_vendor_id, "
                   "pci_device_id, vram_bytes, interface)",
              [(i, v, m, f"{v} {m}", "10de", "0000", b, f) for (v, m, b, f), i in
               gpu_kinds.items()])
        _copy(cur, "system_hardware (system_hardware_id, cpu_model, cpu_vendor, cpu_cores, "
                   "cpu_threads, ram_bytes, architecture, gpu_count)",
              [(i, "bench", "amd", 64, 128, 0, "amd64", n) for (_, n), i in systems.items()])
        _copy(cur, "system_gpu_link (system_hardware_id, slot_index, gpu_hardware_id)",
              [(i, slot, gpu) for (gpu, n), i in systems.items() for slot in range(n)])
        _copy(cur, "hardware_snapshots (event_id, provider_id, node_id, system_hardware_id, "
                   "system_software_id, occurred_at, allocatable_cpu_millicores, "
                   "allocatable_memory_bytes, allocatable_ephemeral_storage_bytes, storage)",
              snapshots)
        _copy(cur, "nodes (provider_id, node_id, current_snapshot_event_id, "
                   "current_occurred_at, first_seen_at, last_seen_at)", nodes)
    for start in range(0, len(provider_ids), INVENTORY_CHUNK):  # as the projector writes them
        conn.execute(NODE_INVENTORY, {"providers": provider_ids[start:start + INVENTORY_CHUNK]})


def _copy(cur: psycopg.Cursor[Any], target: str, rows: Sequence[tuple[Any, ...]]) -> None:
    with cur.copy(f"COPY {target} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


@dataclass(frozen=True)
class ExactTimes:
    """`time_exact`'s figures: per-request seconds (every answer, a 422 or 503 included),
    candidates examined per 200 answer, requests/s over the run, and the answers 422
    `too_costly` (the placement-steps bound) and 503 `over_budget` (the time budget)."""

    seconds: list[float]
    examined: list[int]
    rps: float
    too_costly: int
    over_budget: int


def time_exact(database_url: str, schema: str, now: datetime, requests: Sequence[GroupRequest],
               limit: int) -> ExactTimes:
    """`bid_screening(exact=True, limit=limit)` in process, one request at a time, with the
    service's default limits (a request over the placement-steps bound is a 422 answer, timed
    and counted)."""
    service = QueryService(make_engine(database_url, pool_size=2), schema=schema,
                           clock=lambda: now)

    async def answer(request: GroupRequest) -> int | str:
        try:
            found = await service.bid_screening(request, exact=True, limit=limit)
        except TooCostly:
            return "too_costly"
        except BudgetExceeded:
            return "over_budget"
        return found.work.candidates if found.work else 0

    async def run() -> ExactTimes:
        seconds, outcomes = [], []
        for request in requests[:10]:  # warm-up: statements compiled, connections open
            await answer(request)
        started = time.perf_counter()
        for request in requests:
            begun = time.perf_counter()
            outcomes.append(await answer(request))
            seconds.append(time.perf_counter() - begun)
        elapsed = time.perf_counter() - started
        await service.close()
        return ExactTimes(seconds, [o for o in outcomes if isinstance(o, int)] or [0],
                          len(requests) / elapsed, outcomes.count("too_costly"),
                          outcomes.count("over_budget"))

    return asyncio.run(run())


def baseline_modules() -> tuple[types.ModuleType, types.ModuleType] | None:
    """The bin-packer and the query service of BASELINE_COMMIT, read with `git show` from the
    checkout this package runs from (None without git or that commit); the old service module
    is loaded against the old aggregator, bin-packer and repository."""
    root = Path(hwledger.query.__file__).resolve().parents[1]
    sources = {}
    for name in ("aggregator", "binpacker", "repository", "service"):
        try:
            sources[name] = subprocess.run(
                ["git", "-C", str(root), "show", f"{BASELINE_COMMIT}:query/{name}.py"],
                capture_output=True, check=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return None
    loaded: dict[str, types.ModuleType] = {}
    saved = {n: importlib.import_module(f"hwledger.query.{n}")
             for n in ("aggregator", "binpacker", "repository")}
    try:
        for name in ("aggregator", "binpacker", "repository", "service"):
            module = types.ModuleType(f"hwledger_baseline_{name}")
            sys.modules[module.__name__] = module
            exec(compile(sources[name], f"{BASELINE_COMMIT[:7]}:query/{name}.py", "exec"),
                 module.__dict__)
            loaded[name] = module
            if name != "service":  # what the old service module imports
                sys.modules[f"hwledger.query.{name}"] = module
                setattr(hwledger.query, name, module)
    finally:
        for name, module in saved.items():
            sys.modules[f"hwledger.query.{name}"] = module
            setattr(hwledger.query, name, module)
    return loaded["binpacker"], loaded["service"]


Read = Callable[[Connection, Sequence[str]], Mapping[str, Any]]
Place = Callable[[GroupRequest, Any], Any]


def _per_candidate(conn: Connection, cases: Sequence[tuple[GroupRequest, Sequence[str]]],
                   read: Read, placer: Place, empty: Callable[[str], Any]
                   ) -> tuple[float, float, int]:
    """Seconds per candidate of the inventory read + placement, of the placement alone, and
    the candidates placed."""
    read_seconds = place_seconds = 0.0
    placed = candidates = 0
    for request, provider_ids in cases:
        started = time.perf_counter()
        found = read(conn, provider_ids)
        read_seconds += time.perf_counter() - started
        inventory = [found.get(o) or empty(o) for o in provider_ids]
        started = time.perf_counter()
        outcomes = [placer(request, nodes) for nodes in inventory]
        place_seconds += time.perf_counter() - started
        placed += sum(type(o).__name__ == "Placement" for o in outcomes)
        candidates += len(provider_ids)
    candidates = max(candidates, 1)
    return (read_seconds + place_seconds) / candidates, place_seconds / candidates, placed


def time_bin_packing(database_url: str, schema: str,
                     cases: Sequence[tuple[GroupRequest, Sequence[str]]]) -> dict[str, Any]:
    """Microseconds per candidate (inventory read + placement, and placement alone) for the
    same candidates: this code (search and greedy packing) and BASELINE_COMMIT's, alternated
    three times (the best of each); the placements counted per side."""
    baseline = baseline_modules()
    engine = make_engine(database_url, pool_size=1)
    def read_nodes(conn: Connection, provider_ids: Sequence[str]) -> Mapping[str, Any]:
        return provider_nodes(conn, provider_ids, schema)

    sides: dict[str, tuple[Read, Place, Callable[[str], Any]]] = {
        "search": (read_nodes, place, lambda o: ProviderNodes(o, ())),
        "greedy": (read_nodes, lambda r, n: place(r, n, packing=Packing.GREEDY),
                   lambda o: ProviderNodes(o, ())),
    }
    if baseline is not None:
        old_binpacker, old_service = baseline
        sides["old"] = (old_service.provider_nodes, old_binpacker.place,
                        lambda o: old_binpacker.ProviderNodes(o, ()))
    best: dict[str, tuple[float, float, int]] = {}
    try:
        with engine.connect() as plain:
            conn = plain.execution_options(schema_translate_map={None: schema})
            for _ in range(3):
                for name, (read, placer, empty) in sides.items():
                    found = _per_candidate(conn, cases, read, placer, empty)
                    best[name] = min(best.get(name, found), found)
            conn.rollback()
    finally:
        engine.dispose()
    figures: dict[str, Any] = {"baseline_commit": BASELINE_COMMIT if baseline else None}
    for name, (total, alone, placed) in best.items():
        figures[f"{name}_us_per_candidate"] = round(total * 1e6, 1)
        figures[f"{name}_place_us_per_candidate"] = round(alone * 1e6, 1)
        figures[f"{name}_placed"] = placed
    return figures
