"""The bin-packer: exact, greedy, all-or-nothing placement on per-node free capacity."""

from __future__ import annotations

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
    interface_family,
    matches,
    place,
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


def placed(outcome: Placement | PlacementFailure) -> list[tuple[int, str, tuple[int, ...]]]:
    assert isinstance(outcome, Placement), outcome
    return [(r.unit, r.node_id, r.gpu_slots) for r in outcome.replicas]


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
