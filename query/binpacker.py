"""The bin-packer: the exact placement of a GroupRequest on one provider's per-node free capacity.

Pure. A unit's replicas fill the nodes in node order (first fit, counted: a node takes all the
replicas its free CPU, memory plus RAM-class volumes, ephemeral storage and free GPUs hold in
one step), and persistent volumes draw on the provider's per-class pools. A GPU matches one of
the unit's GPU alternatives by vendor, model, ram rounded to whole GiB and interface (sxm* ->
sxm); all GPUs of one replica share a model, and every replica of a unit uses the model the
unit froze. All or nothing: the result is a `Placement` of every replica, counted per unit and
node, or a `PlacementFailure` naming the first replica that cannot be placed.

Two `Packing` modes. `GREEDY` is Akash's rule: units in request order, each freezing the first
model (by token) with enough free GPUs on the first node that takes one of its replicas.
`SEARCH` (the default) first tries exactly that, and when it fails searches, depth first, the
other unit orders and, per unit, the other models it could freeze (the distinct matching models
with enough free GPUs on some node); a branch ends where a unit cannot be placed. So it places
whatever greedy places, the same way, and more
(docs/adr/0030-bin-packer-order-and-search-packing.md). Each
unit fill visits at most every node once: a step is one node of one fill, `placement_steps`
is the greedy pass's bound (units x nodes), and the search spends from a `Steps` budget.
Before any node, `provider_gate` checks what is provider-wide: the leased IP pool (Akash
AC18-AC21) and the reclamation window.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple

from hwledger.query.group_request import GpuAlternative, GroupRequest, ResourceUnit
from hwledger.schemas.tokens import gpu_tokens
from hwledger.schemas.units import GiB


class GpuKind(NamedTuple):
    """What a request can ask of a GPU: vendor and `vendor/model` tokens, ram in whole GiB,
    interface family."""

    vendor: str
    model: str
    ram_gib: int
    interface: str


@lru_cache(maxsize=4096)
def gpu_kind(vendor: str, model: str, vram_bytes: int, interface: str) -> GpuKind:
    vendor_token, model_token = gpu_tokens(vendor, model)
    return GpuKind(vendor_token, model_token, round(vram_bytes / GiB),
                   interface_family(interface))


@dataclass(frozen=True)
class GpuGroup:
    """A node's free GPUs (not held by an unfinished run) of one vendor, model, vram and
    interface: their slot indices, ascending."""

    vendor: str
    model: str
    vram_bytes: int
    interface: str
    slots: tuple[int, ...]

    @property
    def kind(self) -> GpuKind:
        return gpu_kind(self.vendor, self.model, self.vram_bytes, self.interface)


@dataclass(frozen=True)
class NodeInventory:
    """A node's free capacity: allocatable minus what unfinished runs hold."""

    node_id: str
    cpu_millicores: int
    memory_bytes: int
    ephemeral_bytes: int
    gpus: tuple[GpuGroup, ...] = ()

    @property
    def gpu_count(self) -> int:
        return sum(len(g.slots) for g in self.gpus)


@dataclass(frozen=True)
class ProviderNodes:
    """Everything the bin-packer knows about one provider."""

    provider_id: str
    nodes: tuple[NodeInventory, ...]
    persistent: Mapping[str, int] = field(default_factory=dict)  # storage class -> bytes
    leased_ips: int | None = None
    """Free leased IPs of the provider's pool; None: no IP operator, so none at all."""
    reclamation_window: int | None = None
    """Seconds of notice the provider gives before reclaiming; None: it offers none."""


@dataclass(frozen=True)
class UnitPlacement:
    """`count` replicas of `resources[unit]` on one node; `gpu_slots` are theirs in replica
    order, `gpu_units` per replica."""

    unit: int
    node_id: str
    count: int
    gpu_slots: tuple[int, ...] = ()


@dataclass(frozen=True)
class Placement:
    units: tuple[UnitPlacement, ...]


@dataclass(frozen=True)
class PlacementFailure:
    reason: str


class Packing(StrEnum):
    """How the bin-packer chooses each unit's GPU model and the order of the units."""

    SEARCH = "search"
    GREEDY = "greedy"


class _OutOfSteps(Exception):
    """The `Steps` budget of one `place` ran out."""


SEARCH_FACTOR = 32
"""A `place` call's default budget is this many greedy passes (units x nodes steps each):
enough for three units with two models each to be searched through
(docs/adr/0030-bin-packer-order-and-search-packing.md)."""


@dataclass
class Steps:
    """A budget of placement steps (node visits) for one `place` call; `exhausted` when the
    call stopped because it ran out."""

    left: int
    spent: int = 0
    exhausted: bool = False

    def spend(self, steps: int) -> None:
        if steps > self.left:
            self.exhausted = True
            raise _OutOfSteps
        self.left -= steps
        self.spent += steps


def interface_family(interface: str) -> str:
    """`sxm`, `sxm4`, `SXM5` -> `sxm`; anything else lowercased (`pcie`)."""
    lowered = interface.strip().lower()
    return "sxm" if lowered.startswith("sxm") else lowered


def matches(alternative: GpuAlternative, kind: GpuKind) -> bool:
    """Does a free GPU of this kind satisfy one GPU attribute of a request?"""
    if alternative.token != (kind.vendor if alternative.model is None else kind.model):
        return False
    if alternative.ram_bytes is not None and round(alternative.ram_bytes / GiB) != kind.ram_gib:
        return False
    return alternative.interface is None or alternative.interface == kind.interface


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


class _Unit:
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
def _unit(index: int, unit: ResourceUnit) -> _Unit:
    """The `_Unit` of a request's unit, shared by its candidates: its GPU kind matches are
    decided once per request, not once per candidate."""
    return _Unit(index, unit)


class _State:
    """The capacity left while one request is placed: per node [cpu, memory, ephemeral] and
    free GPU slots per kind (in slot order), and the persistent pools."""

    __slots__ = ("capacity", "free", "pools")

    def __init__(self, capacity: list[list[int]], free: list[dict[GpuKind, list[int]]],
                 pools: dict[str, int]) -> None:
        self.capacity, self.free, self.pools = capacity, free, pools

    @classmethod
    def of(cls, inventory: ProviderNodes) -> _State:
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

    def copy(self) -> _State:
        return _State([list(c) for c in self.capacity],
                      [{k: list(s) for k, s in f.items()} for f in self.free], dict(self.pools))


def _pool_share(unit: _Unit, pools: Mapping[str, int], most: int) -> int:
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


def provider_gate(request: GroupRequest, inventory: ProviderNodes) -> PlacementFailure | None:
    """Why the provider as a whole cannot take the request, before any node is tried; None
    when it can. Leased IPs come from one provider-wide pool: a request for none skips the
    check (AC21), a provider without an IP operator has none (AC20), and the distinct IPs the
    group needs must not exceed the free ones (AC19). A requested reclamation window needs a
    provider window at least as long; a provider without one fails only when one is asked for.
    """
    wanted = request.leased_ips
    if wanted:
        if inventory.leased_ips is None:
            return PlacementFailure(f"no leased IPs available: the request needs {wanted} and "
                                    "the provider has no IP operator")
        if wanted > inventory.leased_ips:
            return PlacementFailure(f"insufficient number of IPs: the request needs {wanted}, "
                                    f"{inventory.leased_ips} free")
    window = request.reclamation_window
    if window is not None:
        offered = inventory.reclamation_window
        if offered is None:
            return PlacementFailure(f"no reclamation window offered (the request asks for "
                                    f"{window} s)")
        if offered < window:
            return PlacementFailure(f"reclamation window {offered} s is shorter than the "
                                    f"requested {window} s")
    return None


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


class _Filled(NamedTuple):
    placed: list[UnitPlacement]
    model: str | None  # the model the unit froze


def _fill(unit: _Unit, model: str | None, node_ids: Sequence[str], state: _State
          ) -> _Filled | str:
    """Place every replica of `unit` on the nodes in order, drawing on `state`: the
    placements and the frozen model, or why not. `model` None freezes the first model (by
    token) with enough free GPUs on the first node that takes a replica (Akash's rule)."""
    left = unit.unit.count
    placed: list[UnitPlacement] = []
    for position, capacity in enumerate(state.capacity):
        if left == 0:
            break
        cpu, memory, ephemeral = capacity
        fits = _share(cpu, unit.cpu, left)
        fits = _share(memory, unit.memory, fits)
        fits = _share(ephemeral, unit.ephemeral, fits)
        if fits == 0:
            continue
        kinds: list[GpuKind] = []
        if unit.gpus:
            free = state.free[position]
            by_model = unit.models(free)
            if model is None:
                model = next((m for m in sorted(by_model)
                              if sum(len(free[k]) for k in by_model[m]) >= unit.gpus), None)
                if model is None:
                    continue
            kinds = by_model.get(model, [])
            fits = _share(sum(len(free[k]) for k in kinds), unit.gpus, fits)
            if fits == 0:
                continue
        replicas = _pool_share(unit, state.pools, fits)
        if replicas:
            capacity[0] = cpu - unit.cpu * replicas
            capacity[1] = memory - unit.memory * replicas
            capacity[2] = ephemeral - unit.ephemeral * replicas
            for storage_class, need in unit.volumes.items():
                state.pools[storage_class] -= need * replicas
            slots = _take(state.free[position], kinds, replicas * unit.gpus) if kinds else []
            placed.append(UnitPlacement(unit.index, node_ids[position], replicas, tuple(slots)))
            left -= replicas
        if replicas < fits:
            return f"{_where(unit.index, unit.unit, left)}: {_pool_failure(unit.unit, state.pools)}"
    if left:
        return f"{_where(unit.index, unit.unit, left)}: no node has {_describe(unit.unit)} free"
    return _Filled(placed, model)


def _models(unit: _Unit, state: _State) -> list[str]:
    """The models `unit` could freeze: matching, with enough free GPUs on some node."""
    found: set[str] = set()
    for free in state.free:
        for model, kinds in unit.models(free).items():
            if sum(len(free[k]) for k in kinds) >= unit.gpus:
                found.add(model)
    return sorted(found)


def placement_steps(request: GroupRequest, inventory: ProviderNodes) -> int:
    """The most steps (node visits) the greedy pass of `place` takes: units x nodes."""
    return len(request.units) * len(inventory.nodes)


def place(request: GroupRequest, inventory: ProviderNodes, *,
          packing: Packing = Packing.SEARCH, steps: Steps | None = None
          ) -> Placement | PlacementFailure:
    """Place every replica of every unit, or say why the first replica of the greedy pass that
    cannot be placed fails. Each fill spends its nodes from `steps` (by default SEARCH_FACTOR
    greedy passes); out of steps, the answer is a failure saying where it stopped. The
    provider's `provider_gate` comes first."""
    refused = provider_gate(request, inventory)
    if refused is not None:
        return refused
    budget = steps if steps is not None else Steps(
        SEARCH_FACTOR * placement_steps(request, inventory))
    units = [_unit(i, u) for i, u in enumerate(request.units)]
    node_ids = [n.node_id for n in inventory.nodes]
    try:
        greedy = _greedy(units, node_ids, _State.of(inventory), budget)
    except _OutOfSteps:
        return PlacementFailure(f"not placed within {budget.spent + budget.left} placement "
                                f"steps")
    if isinstance(greedy, str) and packing is Packing.SEARCH and _searchable(units):
        try:
            found = next(_search(units, node_ids, _State.of(inventory), budget, []), None)
        except _OutOfSteps:
            return PlacementFailure(f"{greedy}; no other unit order or GPU model placed it "
                                    f"within {budget.spent} placement steps")
        if found is not None:
            return _placement(found)
    return PlacementFailure(greedy) if isinstance(greedy, str) else _placement(greedy)


def _placement(placed: list[UnitPlacement]) -> Placement:
    return Placement(tuple(sorted(placed, key=lambda p: p.unit)))


def _greedy(units: Sequence[_Unit], node_ids: Sequence[str], state: _State, budget: Steps
            ) -> list[UnitPlacement] | str:
    placed: list[UnitPlacement] = []
    for unit in units:
        budget.spend(len(node_ids))
        filled = _fill(unit, None, node_ids, state)
        if isinstance(filled, str):
            return filled
        placed.extend(filled.placed)
    return placed


def _searchable(units: Sequence[_Unit]) -> bool:
    """Is there any choice beyond the greedy pass: several units, or a GPU unit?"""
    return len(units) > 1 or any(u.gpus for u in units)


def _search(units: Sequence[_Unit], node_ids: Sequence[str], state: _State, budget: Steps,
            placed: list[UnitPlacement]) -> Iterator[list[UnitPlacement]]:
    """Every complete placement, depth first: each remaining unit (one of identical ones) as
    the next, with each model it could freeze (the greedy choice first)."""
    if not units:
        yield placed
        return
    tried: set[ResourceUnit] = set()
    for position, unit in enumerate(units):
        if unit.unit in tried:
            continue
        tried.add(unit.unit)
        rest = [*units[:position], *units[position + 1:]]
        frozen: str | None = None
        for model in [None, *(_models(unit, state) if unit.gpus else ())]:
            if model is not None and model == frozen:
                continue
            budget.spend(len(node_ids))
            branch = state.copy()
            filled = _fill(unit, model, node_ids, branch)
            if isinstance(filled, str):
                continue
            frozen = filled.model
            yield from _search(rest, node_ids, branch, budget, [*placed, *filled.placed])
