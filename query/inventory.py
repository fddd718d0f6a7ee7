"""A provider's per-node free capacity, and the prefilter figures it implies.

`ProviderNodes` is everything the bin-packer knows about one provider: its nodes' free CPU,
memory, ephemeral storage and GPU groups (`NodeInventory`, `GpuGroup`), its persistent pools,
free leased IPs and reclamation window. `provider_totals` is the Python statement of what the
projector's provider_inventory row holds for the free side (totals, per-node maxima, free GPU
tokens, node tokens, storage classes), computed from `ProviderNodes`. The projector computes
the same in SQL over the `node_free` / `node_gpus` views; the agreement test checks one
against the other on random histories, and the query benchmark builds its synthetic rows with
it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from hwledger.query.gpu_attributes import GpuKind, gpu_kind
from hwledger.schemas.tokens import COUNT_STEPS, node_token, ram_token
from hwledger.schemas.validation import INT64_MAX


class GpuGroup(NamedTuple):
    """A node's free GPUs (not held by an unfinished run) of one vendor, model, vram and
    interface: their slot indices, ascending. (Named tuples, as NodeInventory: an `exact`
    answer builds thousands per batch, a few times faster than frozen dataclasses.)"""

    vendor: str
    model: str
    vram_bytes: int
    interface: str
    slots: tuple[int, ...]

    @property
    def kind(self) -> GpuKind:
        return gpu_kind(self.vendor, self.model, self.vram_bytes, self.interface)


class NodeInventory(NamedTuple):
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


def saturated(values: Iterable[int]) -> int:
    """A sum as the read model stores it: at most INT64_MAX (unlimited allocatables are
    INT64_MAX each, so their sums would leave a bigint)."""
    return min(sum(values), INT64_MAX)


def node_tokens(nodes: Iterable[NodeInventory]) -> list[str]:
    """The node tokens of provider_inventory's `gpu_node_tokens_free` (`tokens.node_token`,
    in the order the projector's SQL writes them)."""
    most: dict[str, int] = {}
    for node in nodes:
        models: dict[str, int] = {}
        rams: dict[str, int] = {}
        vendors: dict[str, set[str]] = {}
        for group in node.gpus:
            kind = group.kind
            models[kind.model] = models.get(kind.model, 0) + len(group.slots)
            ram = ram_token(kind.model, kind.ram_gib)
            rams[ram] = rams.get(ram, 0) + len(group.slots)
            vendors.setdefault(kind.vendor, set()).add(kind.model)
        counts = {**rams, **models,
                  **{v: max(models[m] for m in ms) for v, ms in vendors.items()}}
        for token, free in counts.items():
            most[token] = max(most.get(token, 0), free)
    return [node_token(token, step) for token in sorted(most)
            for step in COUNT_STEPS if step <= most[token]]


def provider_totals(provider: ProviderNodes) -> dict[str, Any]:
    """The free-capacity columns of the provider's provider_inventory row."""
    nodes = provider.nodes
    free_tokens = sorted({t for n in nodes for g in n.gpus if g.slots
                          for t in (g.kind.vendor, g.kind.model)})
    return {
        "node_count": len(nodes),
        "total_available_cpu": saturated(n.cpu_millicores for n in nodes),
        "total_available_memory": saturated(n.memory_bytes for n in nodes),
        "total_available_gpu": sum(n.gpu_count for n in nodes),
        "total_available_ephemeral": saturated(n.ephemeral_bytes for n in nodes),
        "total_available_persistent": saturated(provider.persistent.values()),
        "total_available_leased_ip": provider.leased_ips,
        "max_node_free_cpu": max((n.cpu_millicores for n in nodes), default=0),
        "max_node_free_memory": max((n.memory_bytes for n in nodes), default=0),
        "max_node_free_gpu": max((n.gpu_count for n in nodes), default=0),
        "gpu_models_free": free_tokens,
        "gpu_node_tokens_free": node_tokens(nodes),
        "storage_classes": sorted(provider.persistent),
    }
