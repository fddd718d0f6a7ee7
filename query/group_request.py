"""The parsed bid request: a `GroupRequest` of `ResourceUnit`s, as the aggregator builds it.

Plain immutable data, no parsing: `aggregator.parse_group_spec` builds it from a GroupSpec
JSON document, `screening_filter.screening_filter` reduces it to the prefilter's figures and
the bin-packer places it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from hwledger.schemas.tokens import count_step, node_token, ram_gib, ram_token, request_token


@dataclass(frozen=True)
class Attribute:
    key: str
    value: str


@dataclass(frozen=True)
class GpuAlternative:
    """One GPU attribute of a unit: vendor, optional model (None = any), ram and interface."""

    vendor: str
    model: str | None = None
    ram_bytes: int | None = None
    interface: str | None = None

    @property
    def token(self) -> str:
        return request_token(self.vendor, self.model)


@dataclass(frozen=True)
class PersistentVolume:
    storage_class: str
    size_bytes: int


@dataclass(frozen=True)
class ResourceUnit:
    """One `resources[]` entry: the per-replica needs and how many replicas."""

    count: int
    cpu_millicores: int = 0
    memory_bytes: int = 0
    ram_volume_bytes: int = 0
    ephemeral_bytes: int = 0
    persistent: tuple[PersistentVolume, ...] = ()
    gpu_units: int = 0
    gpu_alternatives: tuple[GpuAlternative, ...] = ()
    leased_ip_endpoints: frozenset[int] = frozenset()
    """Sequence numbers of the unit's LEASED_IP endpoints (the others need no leased IP)."""

    def __hash__(self) -> int:
        """The fields' hash, computed once: the bin-packer looks a unit up per candidate
        (`unit_fill.unit_needs`), and a generated dataclass hash walks every field each time."""
        found: int | None = self.__dict__.get("_hash")
        if found is None:
            found = hash(tuple(getattr(self, f.name) for f in fields(self)))
            object.__setattr__(self, "_hash", found)
        return found

    @property
    def node_memory_bytes(self) -> int:
        """Memory one replica takes on its node: memory plus RAM-class volumes."""
        return self.memory_bytes + self.ram_volume_bytes

    @property
    def gpu_tokens(self) -> tuple[str, ...]:
        """OR-alternatives for the prefilter; empty for a unit without GPUs or any GPU."""
        if self.gpu_units == 0:
            return ()
        return tuple(sorted({alt.token for alt in self.gpu_alternatives}))

    @property
    def gpu_node_tokens(self) -> tuple[str, ...]:
        """OR-alternatives for the prefilter's per-node GPU count (`tokens.node_token`): one
        replica's GPUs are of one model on one node, so some node must have `count_step(
        gpu_units)` free of an alternative's vendor, model, or model and ram. A model asked for
        with several rams counts as the model (its replica may mix them). Empty where the
        tokens say no more than `gpu_tokens`: one GPU, no ram, or any GPU."""
        if self.gpu_units == 0 or not self.gpu_alternatives:
            return ()
        rams: dict[str, set[int]] = {}
        for alt in self.gpu_alternatives:
            if alt.model is not None and alt.ram_bytes is not None:
                rams.setdefault(alt.token, set()).add(ram_gib(alt.ram_bytes))
        bases = {ram_token(alt.token, next(iter(rams[alt.token])))
                 if len(rams.get(alt.token, ())) == 1 and alt.ram_bytes is not None else alt.token
                 for alt in self.gpu_alternatives}
        if self.gpu_units == 1 and bases == set(self.gpu_tokens):
            return ()
        step = count_step(self.gpu_units)
        return tuple(sorted(node_token(base, step) for base in bases))

    @property
    def storage_classes(self) -> tuple[str, ...]:
        return tuple(sorted({v.storage_class for v in self.persistent}))


@dataclass(frozen=True)
class GroupRequest:
    """A validated GroupSpec; `reclamation_window` in seconds (None: none asked for)."""

    units: tuple[ResourceUnit, ...]
    signed_by_all_of: tuple[str, ...] = ()
    signed_by_any_of: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    reclamation_window: int | None = None

    @property
    def leased_ips(self) -> int:
        """Leased IPs the group needs: its distinct LEASED_IP sequence numbers (Akash AC18: an
        endpoint several units share is one IP)."""
        return len(frozenset().union(*(u.leased_ip_endpoints for u in self.units)))
