"""The bin-packer: the exact placement of a GroupRequest on one provider's per-node free capacity.

Pure. Replicas are placed greedily, unit by unit, on the first node (in node order) with enough
free CPU, memory (plus RAM-class volumes), ephemeral storage and free GPUs matching one of the
unit's GPU alternatives (vendor, model, ram rounded to whole GiB, interface with sxm* -> sxm).
All GPUs of one replica share a model, and the first replica freezes the unit's GPU model for
the replicas after it. Persistent volumes draw on the provider's per-class pool. All or
nothing: the result is a `Placement` of every replica, counted per unit and node, or the first
`PlacementFailure`. A node takes all the replicas it can hold in one step, so the work is at
most units x nodes (`placement_steps`) whatever the counts. Before any node, `provider_gate`
checks what is provider-wide: the leased IP pool (Akash AC18-AC21) and the reclamation window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hwledger.query.aggregator import GpuAlternative, GroupRequest, ResourceUnit
from hwledger.schemas.tokens import gpu_tokens

GiB = 2**30


@dataclass(frozen=True)
class GpuSlot:
    """One installed GPU not held by an unfinished run."""

    slot_index: int
    vendor: str
    model: str
    vram_bytes: int
    interface: str

    @property
    def tokens(self) -> tuple[str, str]:
        return gpu_tokens(self.vendor, self.model)


@dataclass(frozen=True)
class NodeInventory:
    """A node's free capacity: allocatable minus what unfinished runs hold."""

    node_id: str
    cpu_millicores: int
    memory_bytes: int
    ephemeral_bytes: int
    gpus: tuple[GpuSlot, ...] = ()


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


def interface_family(interface: str) -> str:
    """`sxm`, `sxm4`, `SXM5` -> `sxm`; anything else lowercased (`pcie`)."""
    lowered = interface.strip().lower()
    return "sxm" if lowered.startswith("sxm") else lowered


def matches(alternative: GpuAlternative, gpu: GpuSlot) -> bool:
    """Does this free GPU satisfy one GPU attribute of a request?"""
    vendor_token, model_token = gpu.tokens
    wanted = alternative.token
    if wanted != (vendor_token if alternative.model is None else model_token):
        return False
    if alternative.ram_bytes is not None and (
            round(alternative.ram_bytes / GiB) != round(gpu.vram_bytes / GiB)):
        return False
    return alternative.interface is None or (
        alternative.interface == interface_family(gpu.interface))


def gpus_by_model(unit: ResourceUnit, free: Sequence[GpuSlot], frozen_model: str | None
                  ) -> dict[str, list[GpuSlot]]:
    """The free GPUs matching the unit (and its frozen model, if any), per model token."""
    by_model: dict[str, list[GpuSlot]] = {}
    for gpu in free:
        fits = (not unit.gpu_alternatives
                or any(matches(alt, gpu) for alt in unit.gpu_alternatives))
        if fits and frozen_model in (None, gpu.tokens[1]):
            by_model.setdefault(gpu.tokens[1], []).append(gpu)
    return by_model


def _describe(unit: ResourceUnit) -> str:
    needs = [f"{unit.cpu_millicores}m cpu", f"{unit.node_memory_bytes} B memory",
             f"{unit.ephemeral_bytes} B ephemeral"]
    if unit.gpu_units:
        kinds = ", ".join(a.token for a in unit.gpu_alternatives) or "any"
        needs.append(f"{unit.gpu_units} GPU ({kinds})")
    return ", ".join(needs)


def _share(free: int, need: int, most: int) -> int:
    """How many needs of `need` fit in `free`, at most `most` (all of them when need is 0)."""
    return most if need == 0 else min(most, free // need)


@dataclass
class _Node:
    """A node's capacity left while one request is placed."""

    cpu: int
    memory: int
    ephemeral: int
    gpus: list[GpuSlot]

    def fit(self, unit: ResourceUnit, most: int, frozen_model: str | None
            ) -> tuple[int, tuple[GpuSlot, ...]]:
        """How many replicas of `unit` (at most `most`) fit here and their GPUs: the first free
        ones of one model, the frozen one or else the first model (by token) with enough."""
        replicas = _share(self.cpu, unit.cpu_millicores, most)
        replicas = _share(self.memory, unit.node_memory_bytes, replicas)
        replicas = _share(self.ephemeral, unit.ephemeral_bytes, replicas)
        if replicas == 0 or unit.gpu_units == 0:
            return replicas, ()
        by_model = gpus_by_model(unit, self.gpus, frozen_model)
        model = next((m for m in sorted(by_model) if len(by_model[m]) >= unit.gpu_units), None)
        if model is None:
            return 0, ()
        replicas = _share(len(by_model[model]), unit.gpu_units, replicas)
        return replicas, tuple(by_model[model][: replicas * unit.gpu_units])

    def take(self, unit: ResourceUnit, replicas: int, gpus: tuple[GpuSlot, ...]) -> None:
        self.cpu -= unit.cpu_millicores * replicas
        self.memory -= unit.node_memory_bytes * replicas
        self.ephemeral -= unit.ephemeral_bytes * replicas
        self.gpus = [g for g in self.gpus if g not in gpus]


def _pool_share(unit: ResourceUnit, pools: Mapping[str, int], most: int) -> int:
    """How many replicas' persistent volumes (at most `most`) the class pools still hold."""
    needs: dict[str, int] = {}
    for volume in unit.persistent:
        needs[volume.storage_class] = needs.get(volume.storage_class, 0) + volume.size_bytes
    for storage_class, need in needs.items():
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


def placement_steps(request: GroupRequest, inventory: ProviderNodes) -> int:
    """The most node visits `place` makes for this request: units x nodes."""
    return len(request.units) * len(inventory.nodes)


def place(request: GroupRequest, inventory: ProviderNodes) -> Placement | PlacementFailure:
    """Place every replica of every unit, or say why the first one that cannot be placed fails.

    Replicas are placed as counts: each node, in order, takes as many of the unit's remaining
    replicas as its free capacity (and the class pools) hold, which is what placing them one
    by one on the first node that fits does, in at most units x nodes steps. The provider's
    `provider_gate` comes first."""
    refused = provider_gate(request, inventory)
    if refused is not None:
        return refused
    nodes = {n.node_id: _Node(n.cpu_millicores, n.memory_bytes, n.ephemeral_bytes, list(n.gpus))
             for n in inventory.nodes}
    pools = dict(inventory.persistent)
    placed: list[UnitPlacement] = []
    for index, unit in enumerate(request.units):
        frozen: str | None = None
        left = unit.count
        for node in inventory.nodes:
            if left == 0:
                break
            free = nodes[node.node_id]
            fits, gpus = free.fit(unit, left, frozen)
            if fits == 0:
                continue
            replicas = _pool_share(unit, pools, fits)
            if replicas:
                gpus = gpus[: replicas * unit.gpu_units]
                free.take(unit, replicas, gpus)
                for volume in unit.persistent:
                    pools[volume.storage_class] -= volume.size_bytes * replicas
                placed.append(UnitPlacement(index, node.node_id, replicas,
                                            tuple(g.slot_index for g in gpus)))
                frozen = frozen or (gpus[0].tokens[1] if gpus else None)
                left -= replicas
            if replicas < fits:
                return PlacementFailure(f"{_where(index, unit, left)}: "
                                        f"{_pool_failure(unit, pools)}")
        if left:
            return PlacementFailure(f"{_where(index, unit, left)}: no node has "
                                    f"{_describe(unit)} free")
    return Placement(tuple(placed))


def _where(index: int, unit: ResourceUnit, left: int) -> str:
    return f"resources[{index}] replica {unit.count - left + 1} of {unit.count}"
