"""The bin-packer's provider gate: what is checked provider-wide before any node is tried (the
leased IP pool, Akash AC18-AC21; the reclamation window), and unlimited allocatables."""

from __future__ import annotations

import pytest

from hwledger.query.binpacker import Placement, PlacementFailure, place, provider_gate
from hwledger.query.group_request import GroupRequest, ResourceUnit
from hwledger.query.inventory import NodeInventory, ProviderNodes
from hwledger.schemas.units import GiB
from hwledger.schemas.validation import INT64_MAX

ROOMY = (NodeInventory("node-1", 64_000, 256 * GiB, 1000 * GiB),)


def group(*leased: frozenset[int], window: int | None = None) -> GroupRequest:
    units = tuple(ResourceUnit(count=1, cpu_millicores=1000, memory_bytes=GiB,
                               leased_ip_endpoints=ips) for ips in leased or (frozenset(),))
    return GroupRequest(units, reclamation_window=window)


def provider(ips: int | None = None, window: int | None = None,
             nodes: tuple[NodeInventory, ...] = ROOMY) -> ProviderNodes:
    return ProviderNodes("p", nodes, leased_ips=ips, reclamation_window=window)


def reason(outcome: Placement | PlacementFailure) -> str:
    assert isinstance(outcome, PlacementFailure), outcome
    return outcome.reason


def test_leased_ips_within_the_free_pool_pass() -> None:
    # AC19: a pool of 10 with 4 in use and 2 reserved has 4 free; 3 asked for pass
    assert provider_gate(group(frozenset({1, 2, 3})), provider(ips=4)) is None
    assert isinstance(place(group(frozenset({1, 2, 3})), provider(ips=4)), Placement)
    assert isinstance(place(group(frozenset({1, 2, 3, 4})), provider(ips=4)), Placement)


def test_more_leased_ips_than_free_are_refused_before_any_node() -> None:
    assert reason(place(group(frozenset(range(5))), provider(ips=4))) == \
        "insufficient number of IPs: the request needs 5, 4 free"
    assert reason(place(group(frozenset(range(5))), provider(ips=4, nodes=()))).startswith(
        "insufficient number of IPs")  # the gate, not "no node has ... free"


def test_the_same_endpoint_in_several_units_is_one_ip() -> None:
    assert isinstance(place(group(frozenset({7}), frozenset({7})), provider(ips=1)), Placement)
    assert reason(place(group(frozenset({7}), frozenset({8})), provider(ips=1))).startswith(
        "insufficient number of IPs: the request needs 2, 1 free")


def test_a_provider_without_an_ip_operator_has_no_leased_ips() -> None:
    # AC20: refused whatever its nodes offer; a provider whose pool is all in use differs
    assert reason(place(group(frozenset({1})), provider(ips=None))) == \
        "no leased IPs available: the request needs 1 and the provider has no IP operator"
    assert reason(place(group(frozenset({1})), provider(ips=0))).startswith(
        "insufficient number of IPs")


def test_no_leased_ips_asked_for_skips_the_ip_check() -> None:
    # AC21
    assert provider_gate(group(), provider(ips=None)) is None
    assert isinstance(place(group(), provider(ips=None)), Placement)


@pytest.mark.parametrize(("offered", "asked", "fails"), [
    (7200, 3600, None), (3600, 3600, None),
    (3599, 3600, "reclamation window 3599 s is shorter than the requested 3600 s"),
    (None, 3600, "no reclamation window offered (the request asks for 3600 s)"),
    (None, None, None), (7200, None, None),
])
def test_the_reclamation_window_must_cover_the_requested_one(
        offered: int | None, asked: int | None, fails: str | None) -> None:
    outcome = place(group(window=asked), provider(window=offered))
    if fails is None:
        assert isinstance(outcome, Placement), outcome
    else:
        assert reason(outcome) == fails


def test_unlimited_allocatables_take_any_request() -> None:
    # AC16: an allocatable of -1 is read as INT64_MAX, which holds every total the
    # aggregator accepts (at most INT64_MAX: 8,191 x 2^50 is the most of one quantity)
    unlimited = (NodeInventory("node-1", INT64_MAX, INT64_MAX, INT64_MAX),)
    huge = GroupRequest((ResourceUnit(count=8191, cpu_millicores=2**50,
                                      memory_bytes=2**50, ephemeral_bytes=2**50),))
    assert isinstance(place(huge, provider(nodes=unlimited)), Placement)
    assert reason(place(huge, provider(nodes=ROOMY))).startswith("resources[0] replica 1")
