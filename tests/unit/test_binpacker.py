"""The bin-packer: exact, greedy, all-or-nothing placement on per-node free capacity.

`one_by_one` is the reference: replicas placed one at a time on the first node that fits; the
counted `place` must agree with it (same placements, same failure reason).
"""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from hwledger.query.aggregator import (
    GpuAlternative,
    GroupRequest,
    PersistentVolume,
    ResourceUnit,
)
from hwledger.query.binpacker import (
    GpuSlot,
    NodeInventory,
    Placement,
    PlacementFailure,
    ProviderNodes,
    gpus_by_model,
    interface_family,
    matches,
    place,
    placement_steps,
)

GiB = 2**30
H100 = GpuAlternative("nvidia", "h100")


def gpus(model: str, count: int, *, start: int = 0, vram: int = 80 * GiB,
         interface: str = "sxm", vendor: str = "nvidia") -> tuple[GpuSlot, ...]:
    return tuple(GpuSlot(start + i, vendor, model, vram, interface) for i in range(count))


def node(name: str, cpu: int = 8000, memory: int = 64 * GiB, ephemeral: int = 100 * GiB,
         gpu: tuple[GpuSlot, ...] = ()) -> NodeInventory:
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


def one_by_one(group: GroupRequest, inventory: ProviderNodes) -> list[Replica] | str:
    """The reference placement, one replica at a time: the replicas or the failure reason."""
    free = {n.node_id: [n.cpu_millicores, n.memory_bytes, n.ephemeral_bytes] for n in
            inventory.nodes}
    gpu_left = {n.node_id: list(n.gpus) for n in inventory.nodes}
    pools = dict(inventory.persistent)
    found: list[Replica] = []
    for index, unit in enumerate(group.units):
        frozen: str | None = None
        needs = (unit.cpu_millicores, unit.node_memory_bytes, unit.ephemeral_bytes)
        for replica in range(unit.count):
            where = f"resources[{index}] replica {replica + 1} of {unit.count}"
            chosen = None
            for n in inventory.nodes:
                if any(f < need for f, need in zip(free[n.node_id], needs, strict=True)):
                    continue
                by_model = gpus_by_model(unit, gpu_left[n.node_id], frozen)
                models = [m for m in sorted(by_model) if len(by_model[m]) >= unit.gpu_units]
                if unit.gpu_units == 0 or models:
                    chosen = (n.node_id, tuple(by_model[models[0]][:unit.gpu_units])
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
            frozen = frozen or (picked[0].tokens[1] if picked else None)
            found.append((index, name, tuple(g.slot_index for g in picked)))
    return found


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
    h100 = GpuSlot(0, "nvidia", "h100", 80 * GiB, "sxm")
    assert matches(GpuAlternative("nvidia"), h100)
    assert matches(GpuAlternative("nvidia", "h100", 80 * GiB, "sxm"), h100)
    assert matches(GpuAlternative("nvidia", "h100", 81920 * 2**20), h100)
    assert not matches(GpuAlternative("nvidia", "h100", 40 * GiB), h100)
    assert not matches(GpuAlternative("nvidia", "h100", None, "pcie"), h100)
    assert not matches(GpuAlternative("amd"), h100)
    assert not matches(GpuAlternative("nvidia", "a100"), h100)
    assert matches(GpuAlternative("nvidia", "h100"), GpuSlot(0, "NVIDIA", "H100", 1, "SXM5"))
    assert interface_family("SXM4") == "sxm" and interface_family("pcie") == "pcie"


def test_replica_gpus_share_one_model_and_the_first_replica_freezes_it() -> None:
    any_nvidia = (GpuAlternative("nvidia"),)
    unit = ResourceUnit(count=2, gpu_units=1, gpu_alternatives=any_nvidia)
    frozen_a100 = ProviderNodes("p", (node("a", gpu=gpus("a100", 1) + gpus("h100", 1, start=1)),
                                      node("b", gpu=gpus("a100", 1))))
    assert placed(place(request(unit), frozen_a100)) == [(0, "a", (0,)), (0, "b", (0,))]
    only_other_model_left = ProviderNodes("p", (node("a", gpu=gpus("a100", 1)
                                                     + gpus("h100", 2, start=1)),))
    failure = place(request(unit), only_other_model_left)
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
        nodes.append(NodeInventory(f"n{i}", draw(st.integers(0, 6)), draw(st.integers(0, 6)),
                                   draw(st.integers(0, 6)),
                                   tuple(GpuSlot(s, "nvidia", m, 80 * GiB, "sxm")
                                         for s, m in enumerate(models))))
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


@settings(max_examples=400, deadline=None)
@given(requests(), inventories())
def test_counted_placement_is_placing_replicas_one_by_one(group: GroupRequest,
                                                         inventory: ProviderNodes) -> None:
    expected = one_by_one(group, inventory)
    outcome = place(group, inventory)
    if isinstance(expected, str):
        assert isinstance(outcome, PlacementFailure)
        assert outcome.reason.startswith(expected)
        assert "no node has" in expected or outcome.reason == expected
    else:
        assert placed(outcome) == expected
