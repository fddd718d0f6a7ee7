"""The bin-packer's run over an `exact` answer's candidates, bounded by the request's `Limits`.

`inventories` turns the rows of `repository.inventory_statement` (provider_nodes and the gate
figures) into the bin-packer's `ProviderNodes`; `exact_placements` places the request
on one batch of candidates (pure CPU work, in a worker) and keeps the placeable ones with
their placement; `ExactRun.place_batches` reads the candidates' inventory and, while fewer
than `limit` are placed, the next prefilter batch, in the answer's REPEATABLE READ snapshot.
`ExactWork` counts what was done (`explain`'s `cost`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

import orjson
import psycopg
from sqlalchemy import Connection

from hwledger.query import repository
from hwledger.query.binpacker import (
    SEARCH_FACTOR,
    Packing,
    Placement,
    Steps,
    place,
    placement_steps,
)
from hwledger.query.group_request import GroupRequest
from hwledger.query.inventory import GpuGroup, NodeInventory, ProviderNodes
from hwledger.query.limits import Budget, Limits, TooCostly, check_answer_size
from hwledger.query.prefilter_sql import Prefilter

MAX_BATCH = 1000
"""`exact` reads the candidates in batches: the first of `limit`, each next one twice as large,
at most MAX_BATCH (or `limit` when that is larger)."""

T = TypeVar("T")


class OffLoop(Protocol):
    """Runs CPU work in the service's worker pool within the request's budget."""

    def __call__(self, budget: Budget, work: Callable[[], T]) -> Awaitable[T]: ...


@dataclass
class ExactWork:
    """What the bin-packer did for one `exact` answer: candidates examined, prefilter batches
    read, placement steps spent (`explain`'s `cost`)."""

    candidates: int = 0
    batches: int = 0
    steps: int = 0

    def to_json(self) -> dict[str, int]:
        return {"candidatesExamined": self.candidates, "batches": self.batches,
                "placementSteps": self.steps}


def inventories(rows: Iterable[Sequence[Any]]) -> dict[str, ProviderNodes]:
    """The bin-packer's `ProviderNodes` of the rows of `repository.inventory_statement`: per
    node its free capacity and GPU groups, the persistent pools, the free leased IPs and the
    reclamation window."""
    found = {}
    for provider, nodes, persistent, ips, window in rows:
        found[provider] = ProviderNodes(provider, tuple([
            NodeInventory(node, cpu, memory, ephemeral, tuple([
                GpuGroup(vendor, model, vram, interface, tuple(slots))
                for vendor, model, vram, interface, slots in gpus]))
            for node, cpu, memory, ephemeral, gpus in orjson.loads(nodes or "[]")]),
            orjson.loads(persistent or "{}"), ips, window)
    return found


def provider_nodes(conn: Connection, provider_ids: Sequence[str], schema: str | None = None
                   ) -> dict[str, ProviderNodes]:
    """The providers' per-node inventory (see `inventories`), read on a SQLAlchemy connection
    from the tables in `schema` (None: on the search_path)."""
    return inventories(conn.exec_driver_sql(repository.inventory_sql(schema),
                                            {"provider_ids": list(provider_ids)}))


async def answer_row(conn: psycopg.AsyncConnection[Any], query: Prefilter, schema: str
                     ) -> tuple[Any, ...]:
    """The one row of `query`'s answer statement (`prefilter_sql._answer`), executed as
    `Prefilter.prepare` says."""
    cursor = await conn.execute(*query.answer_sql(schema), prepare=query.prepare)
    row = await cursor.fetchone()
    assert row is not None  # aggregates: always one row
    return tuple(row)


async def read_inventory_rows(conn: psycopg.AsyncConnection[Any], schema: str,
                              provider_ids: Sequence[str]) -> list[Any]:
    """The rows of `inventories`, on an async psycopg connection."""
    cursor = await conn.execute(repository.inventory_sql(schema),
                                {"provider_ids": list(provider_ids)})
    return await cursor.fetchall()


def exact_placements(request: GroupRequest, providers: Sequence[dict[str, Any]],
                     found: Mapping[str, ProviderNodes], limits: Limits, budget: Budget,
                     work: ExactWork, *, wanted: int | None = None,
                     packing: Packing = Packing.SEARCH
                     ) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The providers (JSON objects) the bin-packer can place, with their placement, and why the
    others fail, in order until `wanted` are placed; `work` counts what was examined.

    Every placement step of the request counts against `limits.max_placement_steps`: TooCostly
    before any work when the greedy passes (units x nodes) of this batch would go over what is
    left, or when a search needs more than that; BudgetExceeded when the deadline passes."""
    inventory = [found.get(p["owner"], ProviderNodes(p["owner"], ())) for p in providers]
    greedy = [placement_steps(request, nodes) for nodes in inventory]
    left = limits.max_placement_steps - work.steps
    if sum(greedy) > left:
        before = f" after {work.candidates} examined" if work.candidates else ""
        over = (f"over the bound of {left}" if not work.steps else
                f"over the {left} left of the bound of {limits.max_placement_steps}")
        raise TooCostly(f"placing the request on {len(providers)} candidates{before} takes "
                        f"{sum(greedy)} steps (units x nodes), {over}: lower `limit` or narrow "
                        f"the request")
    reserved = sum(greedy)
    kept: list[dict[str, Any]] = []
    rejected: list[tuple[str, str]] = []
    for provider, nodes, steps in zip(providers, inventory, greedy, strict=True):
        if wanted is not None and len(kept) >= wanted:
            break
        budget.check("bin-packer")
        reserved -= steps
        available = limits.max_placement_steps - work.steps - reserved
        spend = Steps(min(available, max(steps, SEARCH_FACTOR * steps)))
        outcome = place(request, nodes, packing=packing, steps=spend)
        work.candidates += 1
        work.steps += spend.spent
        if spend.exhausted and spend.spent + spend.left == available:
            raise TooCostly(f"the placement search of {provider['owner']} ran past the bound of "
                            f"{limits.max_placement_steps} placement steps after "
                            f"{work.candidates} candidates: lower `limit`, narrow the request "
                            f"or use packing=greedy")
        if isinstance(outcome, Placement):
            kept.append({**provider, "placement": [
                {"unit": u.unit, "node": u.node_id, "count": u.count,
                 "gpuSlots": list(u.gpu_slots)} for u in outcome.units]})
        else:
            rejected.append((provider["owner"], outcome.reason))
    return kept, rejected


@dataclass
class ExactRun:
    """One `exact` answer's bin-packer run: place `request` on the first `limit` placeable
    candidates, under `limits` and `budget`, the CPU work through `off_loop`."""

    request: GroupRequest
    limit: int
    packing: Packing
    limits: Limits
    budget: Budget
    off_loop: OffLoop
    work: ExactWork = field(default_factory=ExactWork)

    async def place_batches(self, conn: psycopg.AsyncConnection[Any], schema: str,
                            batches: Callable[[str, int], Prefilter],
                            batch: tuple[str, bool, str | None]
                            ) -> tuple[str, list[tuple[str, str]], bool, str | None]:
        """The bin-packer over batches of candidates, starting with `batch` (the first answer
        row: candidates' JSON, more to come, last owner), each next one the prefilter
        `batches(after, probe)`, until `limit` are placed or the candidates run out: the
        placeable providers' JSON, the rejections, whether more may follow and the last owner
        examined (where the next page starts)."""
        budget, work, limit = self.budget, self.work, self.limit
        kept: list[dict[str, Any]] = []
        rejected: list[tuple[str, str]] = []
        size = limit
        while True:
            candidates_json, more, last = batch
            providers: list[dict[str, Any]] = await self.off_loop(
                budget, partial(orjson.loads, candidates_json))
            rows = await read_inventory_rows(conn, schema, [p["owner"] for p in providers])
            examined = work.candidates
            placed, failed = await self.off_loop(budget, partial(
                self.place_batch, providers, rows, limit - len(kept)))
            work.batches += 1
            kept.extend(placed)
            rejected.extend(failed)
            if work.candidates - examined < len(providers):  # `limit` placed mid-batch
                more, last = True, providers[work.candidates - examined - 1]["owner"]
            if len(kept) >= limit or not more:
                break
            assert last is not None  # more candidates follow a non-empty batch
            size = min(max(MAX_BATCH, limit), size * 2)
            row = await answer_row(conn, batches(last, size + 1), schema)
            batch = (row[3], row[4], row[6])
        found = await self.off_loop(budget, lambda: orjson.dumps(kept).decode())
        check_answer_size(found, self.limits)
        return found, rejected, more, last

    def place_batch(self, providers: Sequence[dict[str, Any]],
                    rows: Iterable[Sequence[Any]], wanted: int
                    ) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        """`exact_placements` on one batch's inventory rows (CPU work, in a worker)."""
        return exact_placements(self.request, providers, inventories(rows), self.limits,
                                self.budget, self.work, wanted=wanted, packing=self.packing)
