"""The bin-packer: the exact placement of a GroupRequest on one provider's per-node free capacity.

Pure. A unit's replicas fill the nodes in node order (`unit_fill.fill`: first fit, counted: a
node takes all the replicas its free CPU, memory plus RAM-class volumes, ephemeral storage and
free GPUs hold in one step), and persistent volumes draw on the provider's per-class pools. A
GPU matches one of the unit's GPU alternatives by vendor, model, ram rounded to whole GiB and
interface (sxm* -> sxm); all GPUs of one replica share a model, and every replica of a unit
uses the model the unit froze. All or nothing: the result is a `Placement` of every replica,
counted per unit and node, or a `PlacementFailure` naming the first replica that cannot be
placed.

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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from hwledger.query.group_request import GroupRequest, ResourceUnit
from hwledger.query.inventory import ProviderNodes
from hwledger.query.unit_fill import (
    FreeCapacity,
    Unfilled,
    UnitNeeds,
    UnitPlacement,
    fill,
    freezable_models,
    unit_needs,
)


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
    units = [unit_needs(i, u) for i, u in enumerate(request.units)]
    node_ids = [n.node_id for n in inventory.nodes]
    try:
        greedy = _greedy(units, node_ids, FreeCapacity.of(inventory), budget)
    except _OutOfSteps:
        return PlacementFailure(f"not placed within {budget.spent + budget.left} placement "
                                f"steps")
    if isinstance(greedy, Unfilled) and packing is Packing.SEARCH and _searchable(units):
        try:
            found = next(_search(units, node_ids, FreeCapacity.of(inventory), budget, [],
                                 greedy if len(units) == 1 else None), None)
        except _OutOfSteps:
            return PlacementFailure(f"{greedy.reason}; no other unit order or GPU model placed "
                                    f"it within {budget.spent} placement steps")
        if found is not None:
            return _placement(found)
    return PlacementFailure(greedy.reason) if isinstance(greedy, Unfilled) else \
        _placement(greedy)


def _placement(placed: list[UnitPlacement]) -> Placement:
    return Placement(tuple(sorted(placed, key=lambda p: p.unit)))


def _greedy(units: Sequence[UnitNeeds], node_ids: Sequence[str], state: FreeCapacity,
            budget: Steps) -> list[UnitPlacement] | Unfilled:
    placed: list[UnitPlacement] = []
    for unit in units:
        budget.spend(len(node_ids))
        filled = fill(unit, None, node_ids, state)
        if isinstance(filled, Unfilled):
            return filled
        placed.extend(filled.placed)
    return placed


def _searchable(units: Sequence[UnitNeeds]) -> bool:
    """Is there any choice beyond the greedy pass: several units, or a GPU unit?"""
    return len(units) > 1 or any(u.gpus for u in units)


def _search(units: Sequence[UnitNeeds], node_ids: Sequence[str], state: FreeCapacity,
            budget: Steps, placed: list[UnitPlacement], greedy: Unfilled | None = None
            ) -> Iterator[list[UnitPlacement]]:
    """Every complete placement, depth first: each remaining unit (one of identical ones) as
    the next, with each model it could freeze (the greedy choice first). `greedy` is the
    greedy pass's failure when `units` is its only unit: that branch (and the model it froze)
    is known to fail and is not tried again."""
    if not units:
        yield placed
        return
    tried: set[ResourceUnit] = set()
    for position, unit in enumerate(units):
        if unit.unit in tried:
            continue
        tried.add(unit.unit)
        rest = [*units[:position], *units[position + 1:]]
        frozen = greedy.model if greedy is not None else None
        models = freezable_models(unit, state) if unit.gpus else []
        for model in models if greedy is not None else [None, *models]:
            if model is not None and model == frozen:
                continue
            budget.spend(len(node_ids))
            branch = state.copy()
            filled = fill(unit, model, node_ids, branch)
            if isinstance(filled, Unfilled):
                continue
            frozen = filled.model
            yield from _search(rest, node_ids, branch, budget, [*placed, *filled.placed])
