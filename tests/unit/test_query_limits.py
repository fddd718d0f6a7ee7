"""The query service's per-request limits without a database: the placement-steps bound, the
answer cap, the time budget and the bounded worker pool."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from hwledger.query.group_request import GroupRequest, ResourceUnit
from hwledger.query.inventory import NodeInventory, ProviderNodes
from hwledger.query.limits import Budget, BudgetExceeded, Limits, TooCostly, check_answer_size
from hwledger.query.placement_run import ExactWork, exact_placements
from hwledger.query.service import QueryService, make_engine

NOWHERE = "postgresql://nobody@127.0.0.1:1/none"
TWO_UNITS = GroupRequest((ResourceUnit(count=10_000, cpu_millicores=1), ResourceUnit(count=1)))
PROVIDERS = [{"owner": f"p{i}"} for i in range(3)]
NODES = {f"p{i}": ProviderNodes(f"p{i}", (NodeInventory("a", 10**9, 2**40, 2**40),
                                          NodeInventory("b", 10**9, 2**40, 2**40)))
         for i in range(3)}


def test_placement_steps_over_the_bound_are_too_costly_before_any_work() -> None:
    work = ExactWork()
    kept, rejected = exact_placements(TWO_UNITS, PROVIDERS, NODES, Limits(max_placement_steps=12),
                                      Budget.start(10), work)
    assert [p["placement"][0]["count"] for p in kept] == [10_000] * 3 and rejected == []
    assert work == ExactWork(candidates=3, steps=12)
    with pytest.raises(TooCostly, match=r"3 candidates takes 12 steps .* bound of 11"):
        exact_placements(TWO_UNITS, PROVIDERS, NODES, Limits(max_placement_steps=11),
                         Budget.start(10), ExactWork())


def test_the_steps_bound_counts_over_every_batch_of_a_request() -> None:
    work = ExactWork()
    limits = Limits(max_placement_steps=20)
    exact_placements(TWO_UNITS, PROVIDERS, NODES, limits, Budget.start(10), work)
    assert work.steps == 12
    with pytest.raises(TooCostly, match=r"3 candidates after 3 examined takes 12 steps "
                                        r"\(units x nodes\), over the 8 left of the bound of 20"):
        exact_placements(TWO_UNITS, PROVIDERS, NODES, limits, Budget.start(10), work)


def test_the_bin_packer_stops_once_it_placed_the_wanted_count() -> None:
    work = ExactWork()
    kept, _ = exact_placements(TWO_UNITS, PROVIDERS, NODES, Limits(), Budget.start(10), work,
                               wanted=2)
    assert [p["owner"] for p in kept] == ["p0", "p1"] and work.candidates == 2


def test_a_search_past_the_steps_bound_is_too_costly() -> None:
    """Eight CPU units of which two fit on each provider: the search of the first one needs
    more steps than the bound leaves."""
    units = GroupRequest(tuple(ResourceUnit(count=1, cpu_millicores=10**9 // 2 + i)
                               for i in range(8)))
    with pytest.raises(TooCostly, match=r"search of p0 ran past the bound of 200 placement "
                                        r"steps after 1 candidates"):
        exact_placements(units, PROVIDERS, NODES, Limits(max_placement_steps=200),
                         Budget.start(10), ExactWork())


def test_a_spent_budget_stops_the_bin_packer() -> None:
    with pytest.raises(BudgetExceeded, match=r"0 s time budget .*bin-packer"):
        exact_placements(TWO_UNITS, PROVIDERS, NODES, Limits(), Budget(0, time.monotonic() - 1),
                         ExactWork())


def test_the_answer_cap_counts_bytes() -> None:
    check_answer_size("é" * 5, Limits(max_answer_bytes=10))
    with pytest.raises(TooCostly, match="11 bytes, over the cap of 10"):
        check_answer_size("é" * 5 + "x", Limits(max_answer_bytes=10))


def test_a_request_waiting_for_a_busy_worker_runs_out_of_budget() -> None:
    service = QueryService(make_engine(NOWHERE), schema="hwledger",
                           limits=Limits(workers=1))
    release = threading.Event()

    async def scenario() -> None:
        busy = asyncio.ensure_future(service.off_loop(Budget.start(10), release.wait))
        await asyncio.sleep(0.05)
        with pytest.raises(BudgetExceeded, match="waiting for a worker"):
            await service.off_loop(Budget.start(0.05), lambda: None)
        release.set()
        assert await busy is True
        assert await service.off_loop(Budget.start(1), threading.current_thread
                                      ) is not threading.current_thread()

    asyncio.run(scenario())
    asyncio.run(service.close())
