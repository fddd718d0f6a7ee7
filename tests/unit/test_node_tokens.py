"""Node tokens (`inventory.node_tokens`, `ResourceUnit.gpu_node_tokens`): what a provider's row
says of its nodes' free GPUs, and the property the prefilter rests on: a provider the
bin-packer can place a request on has a node token of every unit that asks for some."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hwledger.query.binpacker import Placement, place
from hwledger.query.group_request import GpuAlternative, GroupRequest, ResourceUnit
from hwledger.query.inventory import GpuGroup, NodeInventory, ProviderNodes, node_tokens
from hwledger.schemas.migrations import migrations
from hwledger.schemas.tokens import COUNT_STEPS
from hwledger.schemas.units import GiB


def group(vendor: str, model: str, vram_gib: float, slots: range) -> GpuGroup:
    return GpuGroup(vendor, model, int(vram_gib * GiB), "sxm", tuple(slots))


def test_node_tokens_count_one_model_on_one_node() -> None:
    nodes = (
        NodeInventory("a", 1, 1, 1, (group("NVIDIA", "A100", 80, range(0, 3)),
                                     group("nvidia", "a100", 40, range(3, 5)),
                                     group("nvidia", "h100", 80, range(5, 9)))),
        NodeInventory("b", 1, 1, 1, (group("nvidia", "h100", 80, range(0, 9)),)),
    )
    assert node_tokens(nodes) == [
        "nvidia#1", "nvidia#2", "nvidia#4", "nvidia#8",  # nine H100s on b: 8 is the step
        "nvidia/a100#1", "nvidia/a100#2", "nvidia/a100#4",  # both rams of a100 on a: 5
        "nvidia/a100/40gi#1", "nvidia/a100/40gi#2",
        "nvidia/a100/80gi#1", "nvidia/a100/80gi#2",
        "nvidia/h100#1", "nvidia/h100#2", "nvidia/h100#4", "nvidia/h100#8",
        "nvidia/h100/80gi#1", "nvidia/h100/80gi#2", "nvidia/h100/80gi#4", "nvidia/h100/80gi#8",
    ]
    assert node_tokens([NodeInventory("c", 1, 1, 1)]) == []


KINDS = (("nvidia", "h100", 80), ("NVIDIA", "H100", 80.5), ("nvidia", "a100", 80),
         ("nvidia", "a100", 40), ("amd", "mi300x", 192))
ALTERNATIVES = (GpuAlternative("nvidia"), GpuAlternative("nvidia", "h100"),
                GpuAlternative("nvidia", "a100", 80 * GiB),
                GpuAlternative("nvidia", "a100", 40 * GiB),
                GpuAlternative("nvidia", "h100", 81 * GiB, "sxm"),
                GpuAlternative("nvidia", None, 80 * GiB),
                GpuAlternative("amd", "mi300x", 192 * GiB))


@st.composite
def providers(draw: st.DrawFn) -> ProviderNodes:
    nodes = []
    for index in range(draw(st.integers(1, 3))):
        groups, slot = [], 0
        for vendor, model, vram in draw(st.lists(st.sampled_from(KINDS), max_size=4)):
            size = draw(st.integers(1, 12))
            groups.append(group(vendor, model, vram, range(slot, slot + size)))
            slot += size
        nodes.append(NodeInventory(f"n{index}", 10**6, 10**12, 10**12, tuple(groups)))
    return ProviderNodes("p", tuple(nodes))


@st.composite
def requests(draw: st.DrawFn) -> GroupRequest:
    return GroupRequest(tuple(
        ResourceUnit(count=draw(st.integers(1, 3)), gpu_units=draw(st.integers(1, 20)),
                     gpu_alternatives=tuple(draw(st.lists(st.sampled_from(ALTERNATIVES),
                                                          unique=True, max_size=3))))
        for _ in range(draw(st.integers(1, 2)))))


@settings(max_examples=600, deadline=None)
@given(requests(), providers())
def test_a_placeable_provider_has_a_node_token_of_every_unit(group_request: GroupRequest,
                                                             provider: ProviderNodes) -> None:
    if not isinstance(place(group_request, provider), Placement):
        return
    tokens = set(node_tokens(provider.nodes))
    for unit in group_request.units:
        assert not unit.gpu_node_tokens or tokens & set(unit.gpu_node_tokens)


def test_a_replica_may_mix_the_rams_a_unit_accepts_of_one_model() -> None:
    """Four 80 GB and four 40 GB A100s on one node hold one replica of eight asking for either:
    neither ram token has eight, so the unit's node token is the model's."""
    provider = ProviderNodes("p", (NodeInventory("a", 1, 1, 1, (
        group("nvidia", "a100", 80, range(0, 4)), group("nvidia", "a100", 40, range(4, 8)))),))
    unit = ResourceUnit(count=1, gpu_units=8, gpu_alternatives=(
        GpuAlternative("nvidia", "a100", 80 * GiB), GpuAlternative("nvidia", "a100", 40 * GiB)))
    assert isinstance(place(GroupRequest((unit,)), provider), Placement)
    assert unit.gpu_node_tokens == ("nvidia/a100#8",)
    assert "nvidia/a100#8" in node_tokens(provider.nodes)


def test_migration_0012_fills_the_column_with_the_same_steps() -> None:
    fill = next(m.sql for m in migrations() if m.version == 12)
    assert "'{" + ",".join(map(str, COUNT_STEPS)) + "}'" in fill
