"""A provider's prefilter figures as its per-node free capacity implies them.

`provider_totals` is the Python statement of what the projector's provider_inventory row holds
for the free side (totals, per-node maxima, free GPU tokens, storage classes), computed from the
bin-packer's `ProviderNodes`. The projector computes the same in SQL over the `node_free` /
`node_gpus` views; the agreement test checks one against the other on random histories, and the
query benchmark builds its synthetic rows with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hwledger.query.binpacker import ProviderNodes
from hwledger.schemas.validation import INT64_MAX


def saturated(values: Iterable[int]) -> int:
    """A sum as the read model stores it: at most INT64_MAX (unlimited allocatables are
    INT64_MAX each, so their sums would leave a bigint)."""
    return min(sum(values), INT64_MAX)


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
        "storage_classes": sorted(provider.persistent),
    }
