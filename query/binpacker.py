"""The bin-packer: the exact placement of a GroupRequest on one provider's per-node free capacity.

Pure. Replicas are placed greedily, unit by unit, on the first node (in node order) with enough
free CPU, memory (plus RAM-class volumes), ephemeral storage and free GPUs matching one of the
unit's GPU alternatives (vendor, model, ram rounded to whole GiB, interface with sxm* -> sxm).
All GPUs of one replica share a model, and the first replica freezes the unit's GPU model for
the replicas after it. Persistent volumes draw on the provider's per-class pool. All or
nothing: the result is a `Placement` of every replica or the first `PlacementFailure`.
"""

from __future__ import annotations

from collections.abc import Mapping
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


@dataclass(frozen=True)
class ReplicaPlacement:
    unit: int
    replica: int
    node_id: str
    gpu_slots: tuple[int, ...] = ()


@dataclass(frozen=True)
class Placement:
    replicas: tuple[ReplicaPlacement, ...]


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


def pick_gpus(unit: ResourceUnit, free: list[GpuSlot], frozen_model: str | None
              ) -> tuple[GpuSlot, ...] | None:
    """`unit.gpu_units` free GPUs of one model matching the unit, or None."""
    if unit.gpu_units == 0:
        return ()
    by_model: dict[str, list[GpuSlot]] = {}
    for gpu in free:
        fits = (not unit.gpu_alternatives
                or any(matches(alt, gpu) for alt in unit.gpu_alternatives))
        if fits and frozen_model in (None, gpu.tokens[1]):
            by_model.setdefault(gpu.tokens[1], []).append(gpu)
    for model in sorted(by_model):
        if len(by_model[model]) >= unit.gpu_units:
            return tuple(by_model[model][: unit.gpu_units])
    return None


def _describe(unit: ResourceUnit) -> str:
    needs = [f"{unit.cpu_millicores}m cpu", f"{unit.node_memory_bytes} B memory",
             f"{unit.ephemeral_bytes} B ephemeral"]
    if unit.gpu_units:
        kinds = ", ".join(a.token for a in unit.gpu_alternatives) or "any"
        needs.append(f"{unit.gpu_units} GPU ({kinds})")
    return ", ".join(needs)


def place(request: GroupRequest, inventory: ProviderNodes) -> Placement | PlacementFailure:
    """Place every replica of every unit, or say why the first one that cannot be placed fails."""
    cpu = {n.node_id: n.cpu_millicores for n in inventory.nodes}
    memory = {n.node_id: n.memory_bytes for n in inventory.nodes}
    ephemeral = {n.node_id: n.ephemeral_bytes for n in inventory.nodes}
    gpus = {n.node_id: list(n.gpus) for n in inventory.nodes}
    pools = dict(inventory.persistent)
    placed: list[ReplicaPlacement] = []
    for index, unit in enumerate(request.units):
        frozen: str | None = None
        for replica in range(unit.count):
            where = f"resources[{index}] replica {replica + 1} of {unit.count}"
            chosen: tuple[str, tuple[GpuSlot, ...]] | None = None
            for node in inventory.nodes:
                name = node.node_id
                if (cpu[name] < unit.cpu_millicores or memory[name] < unit.node_memory_bytes
                        or ephemeral[name] < unit.ephemeral_bytes):
                    continue
                picked = pick_gpus(unit, gpus[name], frozen)
                if picked is not None:
                    chosen = (name, picked)
                    break
            if chosen is None:
                return PlacementFailure(f"{where}: no node has {_describe(unit)} free")
            name, picked = chosen
            for volume in unit.persistent:
                available = pools.get(volume.storage_class)
                if available is None:
                    return PlacementFailure(
                        f"{where}: no storage class {volume.storage_class!r}")
                if available < volume.size_bytes:
                    return PlacementFailure(
                        f"{where}: storage class {volume.storage_class!r} has {available} B "
                        f"free, needs {volume.size_bytes} B")
                pools[volume.storage_class] = available - volume.size_bytes
            cpu[name] -= unit.cpu_millicores
            memory[name] -= unit.node_memory_bytes
            ephemeral[name] -= unit.ephemeral_bytes
            gpus[name] = [g for g in gpus[name] if g not in picked]
            if picked and frozen is None:
                frozen = picked[0].tokens[1]
            placed.append(ReplicaPlacement(index, replica, name,
                                           tuple(g.slot_index for g in picked)))
    return Placement(tuple(placed))
