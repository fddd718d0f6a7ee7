"""The query service's per-request limits without a database: the placement-steps bound, the
answer cap, the time budget and the bounded worker pool."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from hwledger.query.aggregator import GroupRequest, ResourceUnit
from hwledger.query.binpacker import NodeInventory, ProviderNodes
from hwledger.query.service import (
    Budget,
    BudgetExceeded,
    Limits,
    QueryService,
    TooCostly,
    check_answer_size,
    exact_placements,
    make_engine,
)

NOWHERE = "postgresql://nobody@127.0.0.1:1/none"
TWO_UNITS = GroupRequest((ResourceUnit(count=10_000, cpu_millicores=1), ResourceUnit(count=1)))
PROVIDERS = [{"owner": f"p{i}"} for i in range(3)]
NODES = {f"p{i}": ProviderNodes(f"p{i}", (NodeInventory("a", 10**9, 2**40, 2**40),
                                          NodeInventory("b", 10**9, 2**40, 2**40)))
         for i in range(3)}


def test_placement_steps_over_the_bound_are_too_costly_before_any_work() -> None:
    kept, rejected = exact_placements(TWO_UNITS, PROVIDERS, NODES, Limits(max_placement_steps=12),
                                      Budget.start(10))
    assert [p["placement"][0]["count"] for p in kept] == [10_000] * 3 and rejected == []
    with pytest.raises(TooCostly, match=r"3 candidates takes 12 steps .* bound of 11"):
        exact_placements(TWO_UNITS, PROVIDERS, NODES, Limits(max_placement_steps=11),
                         Budget.start(10))


def test_a_spent_budget_stops_the_bin_packer() -> None:
    with pytest.raises(BudgetExceeded, match=r"0 s time budget .*bin-packer"):
        exact_placements(TWO_UNITS, PROVIDERS, NODES, Limits(), Budget(0, time.monotonic() - 1))


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
