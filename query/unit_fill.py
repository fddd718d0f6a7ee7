"""One unit's fill: its replicas placed on a provider's nodes in node order, first fit, counted.

Pure. `unit_needs` is what a unit's fills look up (per-replica needs, per-class volume bytes,
which GPU kinds match, decided once per kind); `FreeCapacity` the capacity left while one
request is placed (per node, and the persistent pools); `fill` places every replica of one
unit, drawing on it (a node takes all the replicas its free CPU, memory plus RAM-class volumes,
ephemeral storage and free GPUs hold in one step), and `freezable_models` says which GPU models
the unit could freeze. `binpacker.place` orders the fills.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from hwledger.query.gpu_attributes import GpuKind, matches
from hwledger.query.group_request import ResourceUnit
from hwledger.query.inventory import ProviderNodes


@dataclass(frozen=True)
class UnitPlacement:
    """`count` replicas of `resources[unit]` on one node; `gpu_slots` are theirs in replica
    order, `gpu_units` per replica."""

    unit: int
    node_id: str
    count: int
    gpu_slots: tuple[int, ...] = ()


def _describe(unit: ResourceUnit) -> str:
    needs = [f"{unit.cpu_millicores}m cpu", f"{unit.node_memory_bytes} B memory",
             f"{unit.ephemeral_bytes} B ephemeral"]
    if unit.gpu_units:
        kinds = ", ".join(a.token for a in unit.gpu_alternatives) or "any"
        needs.append(f"{unit.gpu_units} GPU ({kinds})")
    return ", ".join(needs)


def _where(index: int, unit: ResourceUnit, left: int) -> str:
    return f"resources[{index}] replica {unit.count - left + 1} of {unit.count}"


def _share(free: int, need: int, most: int) -> int:
    """How many needs of `need` fit in `free`, at most `most` (all of them when need is 0)."""
    return most if need == 0 else min(most, free // need)


class UnitNeeds:
    """One unit of the request with what its fills look up: per-replica needs, per-class
    volume bytes, and which GPU kinds match (decided once per kind)."""

    __slots__ = ("_kinds", "cpu", "ephemeral", "gpus", "index", "memory", "unit", "volumes")

    def __init__(self, index: int, unit: ResourceUnit) -> None:
        self.index, self.unit = index, unit
        self.cpu, self.memory = unit.cpu_millicores, unit.node_memory_bytes
        self.ephemeral, self.gpus = unit.ephemeral_bytes, unit.gpu_units
        volumes: dict[str, int] = {}
        for volume in unit.persistent:
            volumes[volume.storage_class] = volumes.get(volume.storage_class, 0) + \
                volume.size_bytes
        self.volumes = volumes
        self._kinds: dict[GpuKind, bool] = {}

    def wants(self, kind: GpuKind) -> bool:
        found = self._kinds.get(kind)
        if found is None:
            found = not self.unit.gpu_alternatives or any(
                matches(alt, kind) for alt in self.unit.gpu_alternatives)
            self._kinds[kind] = found
        return found

    def models(self, free: Mapping[GpuKind, list[int]]) -> dict[str, list[GpuKind]]:
        """The matching kinds of one node's free GPUs, per model token (kinds with none
        left skipped)."""
        found: dict[str, list[GpuKind]] = {}
        for kind, slots in free.items():
            if slots and self.wants(kind):
                found.setdefault(kind.model, []).append(kind)
        return found


@lru_cache(maxsize=1024)
def unit_needs(index: int, unit: ResourceUnit) -> UnitNeeds:
    """The `UnitNeeds` of a request's unit, shared by its candidates: its GPU kind matches are
    decided once per request, not once per candidate."""
    return UnitNeeds(index, unit)


class FreeCapacity:
    """The capacity left while one request is placed: per node [cpu, memory, ephemeral] and
    free GPU slots per kind (in slot order), and the persistent pools."""

    __slots__ = ("capacity", "free", "pools")

    def __init__(self, capacity: list[list[int]], free: list[dict[GpuKind, list[int]]],
                 pools: dict[str, int]) -> None:
        self.capacity, self.free, self.pools = capacity, free, pools

    @classmethod
    def of(cls, inventory: ProviderNodes) -> FreeCapacity:
        free: list[dict[GpuKind, list[int]]] = []
        for node in inventory.nodes:
            kinds: dict[GpuKind, list[int]] = {}
            for group in node.gpus:
                slots = kinds.get(group.kind)
                kinds[group.kind] = list(group.slots) if slots is None else sorted(
                    [*slots, *group.slots])
            free.append(kinds)
        return cls([[n.cpu_millicores, n.memory_bytes, n.ephemeral_bytes]
                     for n in inventory.nodes], free, dict(inventory.persistent))

    def copy(self) -> FreeCapacity:
        return FreeCapacity([list(c) for c in self.capacity],
                      [{k: list(s) for k, s in f.items()} for f in self.free], dict(self.pools))


def _pool_share(unit: UnitNeeds, pools: Mapping[str, int], most: int) -> int:
    """How many replicas' persistent volumes (at most `most`) the class pools still hold."""
    for storage_class, need in unit.volumes.items():
        most = 0 if storage_class not in pools else _share(pools[storage_class], need, most)
    return most


def _pool_failure(unit: ResourceUnit, pools: Mapping[str, int]) -> str:
    """Why the pools cannot hold one more replica's persistent volumes (drawn in order)."""
    left = dict(pools)
    for volume in unit.persistent:
        available = left.get(volume.storage_class)
        if available is None:
            return f"no storage class {volume.storage_class!r}"
        if available < volume.size_bytes:
            return (f"storage class {volume.storage_class!r} has {available} B free, "
                    f"needs {volume.size_bytes} B")
        left[volume.storage_class] = available - volume.size_bytes
    raise AssertionError("the pools hold another replica")


def _take(free: dict[GpuKind, list[int]], kinds: Sequence[GpuKind], count: int) -> list[int]:
    """The first `count` free slots (by slot index) of these kinds, removed from `free`."""
    if len(kinds) == 1:
        slots = free[kinds[0]]
        taken = slots[:count]
        del slots[:count]
        return taken
    taken = sorted(s for kind in kinds for s in free[kind])[:count]
    chosen = set(taken)
    for kind in kinds:
        free[kind] = [s for s in free[kind] if s not in chosen]
    return taken


class Filled(NamedTuple):
    placed: list[UnitPlacement]
    model: str | None  # the model the unit froze


class Unfilled(NamedTuple):
    """Why a fill stopped: `left` replicas of `unit` found no room; `pools` the persistent
    pools as they were when those ran out first (None: no node had room), `model` the model
    the unit froze. The reason is written only when asked for: a search discards most."""

    unit: UnitNeeds
    left: int
    model: str | None
    pools: dict[str, int] | None = None

    @property
    def reason(self) -> str:
        where = _where(self.unit.index, self.unit.unit, self.left)
        if self.pools is not None:
            return f"{where}: {_pool_failure(self.unit.unit, self.pools)}"
        return f"{where}: no node has {_describe(self.unit.unit)} free"


def fill(unit: UnitNeeds, model: str | None, node_ids: Sequence[str], state: FreeCapacity
         ) -> Filled | Unfilled:
    """Place every replica of `unit` on the nodes in order, drawing on `state`: the
    placements and the frozen model, or why not. `model` None freezes the first model (by
    token) with enough free GPUs on the first node that takes a replica (Akash's rule)."""
    left = unit.unit.count
    need_cpu, need_memory, need_ephemeral, need_gpus = unit.cpu, unit.memory, unit.ephemeral, \
        unit.gpus
    placed: list[UnitPlacement] = []
    for position, capacity in enumerate(state.capacity):
        if left == 0:
            break
        cpu, memory, ephemeral = capacity
        fits = left
        if need_cpu:
            fits = min(fits, cpu // need_cpu)
        if need_memory:
            fits = min(fits, memory // need_memory)
        if need_ephemeral:
            fits = min(fits, ephemeral // need_ephemeral)
        if fits <= 0:
            continue
        kinds: list[GpuKind] = []
        if need_gpus:
            free = state.free[position]
            if not free:
                continue
            by_model = unit.models(free)
            if model is None:
                model = next((m for m in sorted(by_model)
                              if sum(len(free[k]) for k in by_model[m]) >= need_gpus), None)
                if model is None:
                    continue
            kinds = by_model.get(model, [])
            fits = min(fits, sum(len(free[k]) for k in kinds) // need_gpus)
            if fits == 0:
                continue
        replicas = _pool_share(unit, state.pools, fits) if unit.volumes else fits
        if replicas:
            capacity[0] = cpu - need_cpu * replicas
            capacity[1] = memory - need_memory * replicas
            capacity[2] = ephemeral - need_ephemeral * replicas
            for storage_class, need in unit.volumes.items():
                state.pools[storage_class] -= need * replicas
            slots = _take(state.free[position], kinds, replicas * need_gpus) if kinds else []
            placed.append(UnitPlacement(unit.index, node_ids[position], replicas, tuple(slots)))
            left -= replicas
        if replicas < fits:
            return Unfilled(unit, left, model, dict(state.pools))
    if left:
        return Unfilled(unit, left, model)
    return Filled(placed, model)


def freezable_models(unit: UnitNeeds, state: FreeCapacity) -> list[str]:
    """The models `unit` could freeze: matching, with enough free GPUs on some node."""
    found: set[str] = set()
    for free in state.free:
        for model, kinds in unit.models(free).items():
            if sum(len(free[k]) for k in kinds) >= unit.gpus:
                found.add(model)
    return sorted(found)


