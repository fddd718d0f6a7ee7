"""The bin-packer: exact, all-or-nothing placement on per-node free capacity, greedy or searched.

`one_by_one` is the reference: replicas placed one at a time on the first node that fits, units
in a given order with given frozen models (or Akash's greedy choice); the counted greedy `place`
must agree with it (same placements, same failure reason), and the search must place exactly
when some unit order and choice of models does.
"""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwledger.query.binpacker import (
    Packing,
    Placement,
    PlacementFailure,
    Steps,
    place,
    placement_steps,
)
from hwledger.query.gpu_attributes import GpuKind, matches
from hwledger.query.group_request import (
    GpuAlternative,
    GroupRequest,
    PersistentVolume,
    ResourceUnit,
)
from hwledger.query.inventory import GpuGroup, NodeInventory, ProviderNodes
from hwledger.schemas.units import GiB

H100 = GpuAlternative("nvidia", "h100")


def gpus(model: str, count: int, *, start: int = 0, vram: int = 80 * GiB,
         interface: str = "sxm", vendor: str = "nvidia") -> tuple[GpuGroup, ...]:
    return (GpuGroup(vendor, model, vram, interface, tuple(range(start, start + count))),)


def node(name: str, cpu: int = 8000, memory: int = 64 * GiB, ephemeral: int = 100 * GiB,
         gpu: tuple[GpuGroup, ...] = ()) -> NodeInventory:
    return NodeInventory(name, cpu, memory, ephemeral, gpu)


def request(*units: ResourceUnit) -> GroupRequest:
    return GroupRequest(units)


Replica = tuple[int, str, tuple[int, ...]]


def placed(outcome: Placement | PlacementFailure) -> list[Replica]:
    """The placement expanded per replica: (unit, node, its GPU slots)."""
    assert isinstance(outcome, Placement), outcome
    found: list[Replica] = []
    for u in outcome.units:
        per = len(u.gpu_slots) // u.count
        found.extend((u.unit, u.node_id, u.gpu_slots[r * per:(r + 1) * per])
                     for r in range(u.count))
    return found


Gpu = tuple[int, GpuKind]  # one free GPU: slot index, kind


def gpus_by_model(unit: ResourceUnit, free: list[Gpu], frozen_model: str | None
                  ) -> dict[str, list[Gpu]]:
    """The free GPUs matching the unit (and its frozen model, if any), per model token."""
    by_model: dict[str, list[Gpu]] = {}
    for slot, kind in sorted(free):
        fits = not unit.gpu_alternatives or any(matches(a, kind) for a in unit.gpu_alternatives)
        if fits and frozen_model in (None, kind.model):
            by_model.setdefault(kind.model, []).append((slot, kind))
    return by_model


def one_by_one(group: GroupRequest, inventory: ProviderNodes, order: tuple[int, ...] = (),
               models: tuple[str | None, ...] = ()) -> list[Replica] | str:
    """The reference placement, one replica at a time, units in `order` (default: request
    order) each frozen to `models[unit]` (default None: the greedy choice): the replicas in
    unit order or the failure reason."""
    free = {n.node_id: [n.cpu_millicores, n.memory_bytes, n.ephemeral_bytes] for n in
            inventory.nodes}
    gpu_left = {n.node_id: [(slot, g.kind) for g in n.gpus for slot in g.slots]
                for n in inventory.nodes}
    pools = dict(inventory.persistent)
    found: list[Replica] = []
    for index in order or range(len(group.units)):
        unit = group.units[index]
        frozen = models[index] if models else None
        needs = (unit.cpu_millicores, unit.node_memory_bytes, unit.ephemeral_bytes)
        for replica in range(unit.count):
            where = f"resources[{index}] replica {replica + 1} of {unit.count}"
            chosen = None
            for n in inventory.nodes:
                if any(f < need for f, need in zip(free[n.node_id], needs, strict=True)):
                    continue
                by_model = gpus_by_model(unit, gpu_left[n.node_id], frozen)
                options = [m for m in sorted(by_model) if len(by_model[m]) >= unit.gpu_units]
                if unit.gpu_units == 0 or options:
                    chosen = (n.node_id, tuple(by_model[options[0]][:unit.gpu_units])
                              if unit.gpu_units else ())
                    break
            if chosen is None:
                return f"{where}: no node has"
            name, picked = chosen
            for volume in unit.persistent:
                available = pools.get(volume.storage_class)
                if available is None:
                    return f"{where}: no storage class {volume.storage_class!r}"
                if available < volume.size_bytes:
                    return (f"{where}: storage class {volume.storage_class!r} has {available} "
                            f"B free, needs {volume.size_bytes} B")
                pools[volume.storage_class] = available - volume.size_bytes
            free[name] = [f - need for f, need in zip(free[name], needs, strict=True)]
            gpu_left[name] = [g for g in gpu_left[name] if g not in picked]
            frozen = frozen or (picked[0][1].model if picked else None)
            found.append((index, name, tuple(slot for slot, _ in picked)))
    return sorted(found, key=lambda replica: replica[0])


def greedy(group: GroupRequest, inventory: ProviderNodes) -> Placement | PlacementFailure:
    return place(group, inventory, packing=Packing.GREEDY)


def test_greedy_first_fit_across_nodes() -> None:
    provider = ProviderNodes("p", (node("a", cpu=3000), node("b", cpu=3000)))
    outcome = place(request(ResourceUnit(count=3, cpu_millicores=1500)), provider)
    assert placed(outcome) == [(0, "a", ()), (0, "a", ()), (0, "b", ())]


def test_all_or_nothing_names_the_first_replica_that_fails() -> None:
    provider = ProviderNodes("p", (node("a", cpu=2000),))
    outcome = place(request(ResourceUnit(count=3, cpu_millicores=1000)), provider)
    assert isinstance(outcome, PlacementFailure)
    assert outcome.reason.startswith("resources[0] replica 3 of 3: no node has 1000m cpu")


def test_memory_includes_ram_volumes() -> None:
    provider = ProviderNodes("p", (node("a", memory=4 * GiB),))
    fits = ResourceUnit(count=1, memory_bytes=3 * GiB, ram_volume_bytes=GiB)
    too_big = ResourceUnit(count=1, memory_bytes=3 * GiB, ram_volume_bytes=GiB + 1)
    assert isinstance(place(request(fits), provider), Placement)
    assert isinstance(place(request(too_big), provider), PlacementFailure)


def test_gpu_vendor_model_ram_interface() -> None:
    h100 = gpus("h100", 1)[0].kind
    assert h100 == GpuKind("nvidia", "nvidia/h100", 80, "sxm")
    assert matches(GpuAlternative("nvidia"), h100)
    assert matches(GpuAlternative("nvidia", "h100", 80 * GiB, "sxm"), h100)
    assert matches(GpuAlternative("nvidia", "h100", 81920 * 2**20), h100)
    assert not matches(GpuAlternative("nvidia", "h100", 40 * GiB), h100)
    assert not matches(GpuAlternative("nvidia", "h100", None, "pcie"), h100)
    assert not matches(GpuAlternative("amd"), h100)
    assert not matches(GpuAlternative("nvidia", "a100"), h100)
    shouted = gpus("H100", 1, vendor="NVIDIA", interface="SXM5")[0]
    assert matches(GpuAlternative("nvidia", "h100"), shouted.kind)


def test_replica_gpus_share_one_model_and_the_first_replica_freezes_it() -> None:
    any_nvidia = (GpuAlternative("nvidia"),)
    unit = ResourceUnit(count=2, gpu_units=1, gpu_alternatives=any_nvidia)
    frozen_a100 = ProviderNodes("p", (node("a", gpu=gpus("a100", 1) + gpus("h100", 1, start=1)),
                                      node("b", gpu=gpus("a100", 1))))
    assert placed(greedy(request(unit), frozen_a100)) == [(0, "a", (0,)), (0, "b", (0,))]
    only_other_model_left = ProviderNodes("p", (node("a", gpu=gpus("a100", 1)
                                                     + gpus("h100", 2, start=1)),))
    failure = greedy(request(unit), only_other_model_left)
    assert isinstance(failure, PlacementFailure)
    assert failure.reason.startswith("resources[0] replica 2 of 2")
    pair = ResourceUnit(count=1, gpu_units=2, gpu_alternatives=any_nvidia)
    one_each = ProviderNodes("p", (node("a", gpu=gpus("a100", 1) + gpus("h100", 1, start=1)),))
    assert isinstance(place(request(pair), one_each), PlacementFailure)


def test_gpus_are_not_reused_and_a_unit_without_gpus_ignores_them() -> None:
    provider = ProviderNodes("p", (node("a", gpu=gpus("h100", 2)),
                                   node("b", gpu=gpus("h100", 1))))
    unit = ResourceUnit(count=3, cpu_millicores=100, gpu_units=1, gpu_alternatives=(H100,))
    assert placed(place(request(unit), provider)) == [(0, "a", (0,)), (0, "a", (1,)),
                                                      (0, "b", (0,))]
    assert isinstance(place(request(ResourceUnit(count=4, gpu_units=1, gpu_alternatives=(H100,))),
                            provider), PlacementFailure)
    assert placed(place(request(ResourceUnit(count=1, cpu_millicores=100)), provider)) == [
        (0, "a", ())]


def test_units_compete_for_the_same_nodes() -> None:
    provider = ProviderNodes("p", (node("a", cpu=2000),))
    both = request(ResourceUnit(count=1, cpu_millicores=1500),
                   ResourceUnit(count=1, cpu_millicores=1000))
    outcome = place(both, provider)
    assert isinstance(outcome, PlacementFailure) and outcome.reason.startswith("resources[1]")
    assert isinstance(greedy(both, provider), PlacementFailure)


def test_persistent_storage_draws_on_the_class_pool() -> None:
    provider = ProviderNodes("p", (node("a"),), {"beta3": 10 * GiB})
    fits = ResourceUnit(count=2, persistent=(PersistentVolume("beta3", 5 * GiB),))
    too_much = ResourceUnit(count=3, persistent=(PersistentVolume("beta3", 5 * GiB),))
    other = ResourceUnit(count=1, persistent=(PersistentVolume("beta2", 0),))
    assert isinstance(place(request(fits), provider), Placement)
    failure = place(request(too_much), provider)
    assert isinstance(failure, PlacementFailure) and "'beta3' has 0 B free" in failure.reason
    failure = place(request(other), provider)
    assert isinstance(failure, PlacementFailure) and "no storage class 'beta2'" in failure.reason


def test_provider_without_nodes_fails() -> None:
    outcome = place(request(ResourceUnit(count=1)), ProviderNodes("p", ()))
    assert isinstance(outcome, PlacementFailure)


def test_a_node_takes_many_replicas_in_one_step() -> None:
    provider = ProviderNodes("p", (node("a", cpu=4000), node("b", cpu=10**9)))
    outcome = place(request(ResourceUnit(count=10_000, cpu_millicores=1000),
                            ResourceUnit(count=5, cpu_millicores=1000)), provider)
    assert isinstance(outcome, Placement)
    assert [(u.unit, u.node_id, u.count) for u in outcome.units] == [
        (0, "a", 4), (0, "b", 9_996), (1, "b", 5)]
    assert placement_steps(request(ResourceUnit(count=1), ResourceUnit(count=1)),
                           provider) == 4


def test_large_counts_cost_steps_not_replicas() -> None:
    nodes = tuple(node(f"n{i}", cpu=1000, gpu=gpus("h100", 8)) for i in range(40))
    unit = ResourceUnit(count=10_000, cpu_millicores=1)
    started = time.perf_counter()
    outcome = place(request(*[unit] * 4), ProviderNodes("p", nodes))
    assert time.perf_counter() - started < 0.1
    assert isinstance(outcome, Placement)
    assert [(u.unit, u.node_id, u.count) for u in outcome.units] == [
        (i // 10, f"n{i}", 1000) for i in range(40)]


SIZES = st.sampled_from((0, 1, 2, 3))
ALTERNATIVES = st.sampled_from(((), (H100,), (GpuAlternative("nvidia"),),
                                (GpuAlternative("nvidia", "a100"), H100)))


@st.composite
def inventories(draw: st.DrawFn) -> ProviderNodes:
    nodes = []
    for i in range(draw(st.integers(0, 3))):
        models = draw(st.lists(st.sampled_from(("h100", "a100", "t4")), max_size=4))
        slots: dict[str, list[int]] = {}
        for slot, model in enumerate(models):
            slots.setdefault(model, []).append(slot)
        nodes.append(NodeInventory(f"n{i}", draw(st.integers(0, 6)), draw(st.integers(0, 6)),
                                   draw(st.integers(0, 6)),
                                   tuple(GpuGroup("nvidia", m, 80 * GiB, "sxm", tuple(s))
                                         for m, s in slots.items())))
    pools = draw(st.dictionaries(st.sampled_from(("beta1", "beta2")), st.integers(0, 6)))
    return ProviderNodes("p", tuple(nodes), pools)


@st.composite
def requests(draw: st.DrawFn) -> GroupRequest:
    units = []
    for _ in range(draw(st.integers(1, 3))):
        volumes = draw(st.lists(st.builds(PersistentVolume, st.sampled_from(("beta1", "beta2")),
                                          SIZES), max_size=2))
        units.append(ResourceUnit(
            count=draw(st.integers(1, 5)), cpu_millicores=draw(SIZES), memory_bytes=draw(SIZES),
            ephemeral_bytes=draw(SIZES), persistent=tuple(volumes),
            gpu_units=draw(st.integers(0, 2)), gpu_alternatives=draw(ALTERNATIVES)))
    return GroupRequest(tuple(units))


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(requests(), inventories())
def test_counted_placement_is_placing_replicas_one_by_one(group: GroupRequest,
                                                         inventory: ProviderNodes) -> None:
    expected = one_by_one(group, inventory)
    outcome = greedy(group, inventory)
    if isinstance(expected, str):
        assert isinstance(outcome, PlacementFailure)
        assert outcome.reason.startswith(expected)
        assert "no node has" in expected or outcome.reason == expected
    else:
        assert placed(outcome) == expected


def test_search_tries_the_other_models_a_unit_could_freeze() -> None:
    """Issue 15: an H100 and an H200 on one node, an H200 on the other; greedy freezes the H100
    (first by token) and cannot place the second replica, the search freezes the H200."""
    any_model = ResourceUnit(count=2, gpu_units=1,
                             gpu_alternatives=(GpuAlternative("nvidia"),))
    provider = ProviderNodes("p", (node("a", gpu=gpus("h100", 1) + gpus("h200", 1, start=1)),
                                   node("b", gpu=gpus("h200", 1))))
    failure = greedy(request(any_model), provider)
    assert isinstance(failure, PlacementFailure)
    assert failure.reason.startswith("resources[0] replica 2 of 2: no node has")
    assert placed(place(request(any_model), provider)) == [(0, "a", (1,)), (0, "b", (0,))]


def test_search_tries_the_other_unit_orders() -> None:
    provider = ProviderNodes("p", (node("a", cpu=2000), node("b", cpu=1500)))
    group = request(ResourceUnit(count=1, cpu_millicores=1500),
                    ResourceUnit(count=1, cpu_millicores=2000))
    failure = greedy(group, provider)
    assert isinstance(failure, PlacementFailure) and failure.reason.startswith("resources[1]")
    assert placed(place(group, provider)) == [(0, "b", ()), (1, "a", ())]


def test_the_search_is_bounded_by_its_steps() -> None:
    """Eight distinct CPU units of which two fit: 8 x 7 x 6 fills to see it, over the budget."""
    provider = ProviderNodes("p", (node("a", cpu=2000), node("b", cpu=2000)))
    group = request(*(ResourceUnit(count=1, cpu_millicores=1000 + i) for i in range(8)))
    steps = Steps(100)
    failure = place(group, provider, steps=steps)
    assert isinstance(failure, PlacementFailure) and steps.exhausted and steps.spent <= 100
    assert failure.reason.startswith("resources[2] replica 1 of 1: no node has")
    assert failure.reason.endswith("no other unit order or GPU model placed it within "
                                   f"{steps.spent} placement steps")
    default = place(group, provider)
    assert isinstance(default, PlacementFailure)
    assert default.reason.startswith(failure.reason.split(";")[0])
    assert "no other unit order or GPU model placed it within" in default.reason
    first = greedy(group, provider)
    assert isinstance(first, PlacementFailure) and first.reason == failure.reason.split(";")[0]


def test_a_greedy_placement_costs_one_pass() -> None:
    provider = ProviderNodes("p", (node("a", gpu=gpus("h100", 8)),))
    unit = ResourceUnit(count=2, gpu_units=2, gpu_alternatives=(H100,))
    steps = Steps(10**6)
    assert placed(place(request(unit, unit), provider, steps=steps)) == [
        (0, "a", (0, 1)), (0, "a", (2, 3)), (1, "a", (4, 5)), (1, "a", (6, 7))]
    assert steps.spent == placement_steps(request(unit, unit), provider) == 2


def models_of(group: GroupRequest, inventory: ProviderNodes) -> list[list[str | None]]:
    """Per unit, the models it could freeze (None for a unit without GPUs)."""
    found: list[list[str | None]] = []
    for u in group.units:
        models: list[str | None] = [None]
        if u.gpu_units:
            models = [*sorted({g.kind.model for n in inventory.nodes for g in n.gpus
                               if not u.gpu_alternatives
                               or any(matches(a, g.kind) for a in u.gpu_alternatives)})] or [None]
        found.append(models)
    return found


@st.composite
def gpu_fleets(draw: st.DrawFn) -> ProviderNodes:
    """Nodes with room and a mix of GPU models: where model and order choices matter."""
    nodes = []
    for i in range(draw(st.integers(1, 3))):
        models = draw(st.lists(st.sampled_from(("h100", "h200", "a100")), max_size=4))
        slots: dict[str, list[int]] = {}
        for slot, model in enumerate(models):
            slots.setdefault(model, []).append(slot)
        nodes.append(NodeInventory(f"n{i}", draw(st.integers(0, 8)), 8, 8, tuple(
            GpuGroup("nvidia", m, 80 * GiB, "sxm", tuple(s)) for m, s in slots.items())))
    return ProviderNodes("p", tuple(nodes))


@st.composite
def gpu_requests(draw: st.DrawFn) -> GroupRequest:
    return GroupRequest(tuple(ResourceUnit(
        count=draw(st.integers(1, 3)), cpu_millicores=draw(st.integers(0, 4)),
        gpu_units=draw(st.integers(0, 2)),
        gpu_alternatives=draw(st.sampled_from(((), (GpuAlternative("nvidia", "h200"), H100))))
    ) for _ in range(draw(st.integers(1, 3)))))


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(st.one_of(st.tuples(requests(), inventories()), st.tuples(gpu_requests(), gpu_fleets())))
def test_the_search_places_whenever_some_order_and_models_do(
        case: tuple[GroupRequest, ProviderNodes]) -> None:
    """Brute force over every unit order and every choice of frozen models: the search places
    exactly when one of them does; when greedy places, the search places the same way."""
    group, inventory = case
    choices = [one_by_one(group, inventory, order, models)
               for order in itertools.permutations(range(len(group.units)))
               for models in itertools.product(*models_of(group, inventory))]
    found = place(group, inventory, steps=Steps(10**9))
    assert isinstance(found, Placement) == any(not isinstance(c, str) for c in choices)
    if isinstance(found, Placement):
        assert placed(found) in choices
    first = greedy(group, inventory)
    if isinstance(first, Placement):
        assert found == first
    else:
        assert isinstance(found, Placement) or found.reason == first.reason
