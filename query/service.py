"""The query service's reads: one snapshot per answer over the active schema.

`QueryService` owns a SQLAlchemy engine (pooled psycopg connections) and the async psycopg
`Connections` of the screening reads, both checking a connection before handing it out (so
a database blip costs no request once the server answers again), and the briefly cached
active schema. `screen` / `bid_screening` (async) run ONE statement per answer, compiled once
per filter shape: the `asOf` projection position and the candidates as the answer's JSON
text, written by Postgres; with `exact`, a REPEATABLE READ read-only transaction also reads
the candidates' per-node inventory for the bin-packer. `snapshot` serves the read routes
(`hwledger.query.reads`). Database trouble raises `Unavailable`.

Each screening answer's work is bounded (`Limits`): its statements by the time budget (the
connections' statement_timeout), the bin-packer by a count of placement steps and by the
deadline, the answer by a size cap; CPU work runs in a small worker pool off the event loop.
Too costly by its shape is `TooCostly`, out of time is `BudgetExceeded`.
"""

from __future__ import annotations

import asyncio
import json
import select
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from hwledger.query import repository
from hwledger.query.aggregator import BidScreeningFilter, GroupRequest, screening_filter
from hwledger.query.binpacker import (
    SEARCH_FACTOR,
    GpuGroup,
    NodeInventory,
    Packing,
    Placement,
    ProviderNodes,
    Steps,
    place,
    placement_steps,
)
from hwledger.query.fleet import iso
from hwledger.schemas.db import check_schema_name
from hwledger.schemas.errors import UserError
from hwledger.schemas.migrations import active_schema
from hwledger.schemas.secrets import redact

DEFAULT_LIMIT = 100
MAX_BATCH = 1000
"""`exact` reads the candidates in batches: the first of `limit`, each next one twice as large,
at most MAX_BATCH (or `limit` when that is larger)."""
SCHEMA_CACHE_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 5


T = TypeVar("T")


class Unavailable(Exception):
    """The database cannot answer right now (down, or the active schema is missing)."""


class TooCostly(Exception):
    """The request, as shaped, needs more work or a larger answer than `Limits` allow."""


class BudgetExceeded(Exception):
    """The request's time budget ran out (a slow database, or the workers busy under load)."""


@dataclass(frozen=True)
class Limits:
    """The bounds on one screening request's work (HWLEDGER_QUERY_* settings)."""

    max_placement_steps: int = 100_000
    time_budget_seconds: float = 2.0
    max_answer_bytes: int = 16 * 2**20
    workers: int = 2


@dataclass(frozen=True)
class Budget:
    """One request's deadline on the monotonic clock."""

    seconds: float
    deadline: float

    @classmethod
    def start(cls, seconds: float) -> Budget:
        return cls(seconds, time.monotonic() + seconds)

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def check(self, stage: str) -> None:
        if time.monotonic() > self.deadline:
            raise BudgetExceeded(f"the {self.seconds:g} s time budget of the request ran out "
                                 f"({stage}); try again later")


def check_answer_size(providers_json: str, limits: Limits) -> None:
    size = len(providers_json.encode())
    if size > limits.max_answer_bytes:
        raise TooCostly(f"the answer would be {size} bytes, over the cap of "
                        f"{limits.max_answer_bytes}: lower `limit` or narrow the request")


@dataclass(frozen=True)
class ReadModel:
    """The schema the service reads and its statistics' `repository.Shares`."""

    schema: str
    shares: repository.Shares


@dataclass(frozen=True)
class AsOf:
    position: int
    last_event_at: datetime | None
    partitions: tuple[tuple[str, str, int, int], ...]
    min_position_reached: bool | None = None

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "position": self.position,
            "lastEventAt": iso(self.last_event_at),
            "partitions": [{"projection": p, "topic": t, "partition": n, "nextOffset": o}
                           for p, t, n, o in self.partitions],
        }
        if self.min_position_reached is not None:
            found["minPositionReached"] = self.min_position_reached
        return found


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


@dataclass(frozen=True)
class Answer:
    """`providers_json` is the JSON array of the answer's providers ({"owner", "hostUri",
    "auditedBy", "gpuModels", "lastSeenAt", "createdAt", "location", "organization",
    "placement"?}, ordered by owner) as text. `truncated`: more providers may follow
    (candidates, or with `exact` placeable ones, not examined yet); then `after` is where the
    next page starts (the cursor's owner). `candidates` counts the prefilter's providers the
    answer started from (with `exact`, those examined: the placed ones and the `rejected`
    ones), for the service's metrics."""

    schema: str
    as_of: AsOf
    providers_json: str
    screen: BidScreeningFilter
    prefilter: repository.Prefilter
    rejected: tuple[tuple[str, str], ...] = ()
    truncated: bool = False
    candidates: int = 0
    after: str | None = None
    work: ExactWork | None = None

    def providers(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = orjson.loads(self.providers_json)
        return found


def sqlalchemy_url(url: str) -> str:
    """A libpq URL as SQLAlchemy wants it for psycopg 3."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise UserError("the database URL must start with postgresql://")


def make_engine(url: str, pool_size: int = 8) -> Engine:
    return create_engine(
        sqlalchemy_url(url), pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
        pool_recycle=600, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    ).execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)


class Connections:
    """The async psycopg connections of the screening reads (no thread hop): autocommit, so a
    one-statement answer is one round trip; read-only; `repository.SCREENING_SESSION` (UTC for
    the answer's timestamps, the planner's price of an index tuple); REPEATABLE READ for the
    transactions `exact` opens; each statement cut off after `statement_timeout_ms`. At most
    `size` at a time; an idle connection is checked when checked out (`ended_by_server`) and
    one that broke is dropped; a failed connect fails the request at once."""

    def __init__(self, url: str, size: int, statement_timeout_ms: int) -> None:
        self.url = url
        self.statement_timeout_ms = statement_timeout_ms
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(size)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        await conn.execute("SET default_transaction_read_only = on; "
                           + repository.SCREENING_SESSION)
        await conn.execute("SELECT set_config('statement_timeout', %s, false)",
                           (str(self.statement_timeout_ms),))
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        return conn

    async def _checkout(self) -> psycopg.AsyncConnection[Any]:
        """An idle connection the server has not ended (the others closed), else a new one."""
        while self._idle:
            conn = self._idle.pop()
            if not ended_by_server(conn):
                return conn
            await conn.close()
        return await self._connect()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self._slots:
            conn = await self._checkout()
            try:
                yield conn
            finally:
                if conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
                    await conn.close()
                else:
                    self._idle.append(conn)

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().close()


def ended_by_server(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Has the server ended this idle connection? An idle connection has nothing to read
    unless the server said goodbye (a terminated backend's FATAL error, a restart's closed
    socket), so a readable socket means it is gone; the check costs no round trip."""
    if conn.closed:
        return True
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    return bool(readable)


def inventories(node_rows: Iterable[Sequence[Any]], gpu_rows: Iterable[Sequence[Any]],
                gate_rows: Iterable[Sequence[Any]] = ()) -> dict[str, ProviderNodes]:
    """Per-node free capacity, free GPUs and persistent pools from the rows of
    `repository.node_statement` and `repository.gpu_statement`, with the provider-wide leased
    IPs and reclamation window of `repository.gate_statement`."""
    gates = {provider: (ips, window) for provider, ips, window in gate_rows}
    gpus: dict[tuple[str, str], list[GpuGroup]] = {}
    for provider, node, vendor, model, vram, interface, slots in gpu_rows:
        gpus.setdefault((provider, node), []).append(
            GpuGroup(vendor, model, vram, interface, tuple(slots)))
    found: dict[str, list[NodeInventory]] = {}
    pools: dict[str, dict[str, int]] = {}
    for provider, node, cpu, memory, ephemeral, storage in node_rows:
        found.setdefault(provider, []).append(NodeInventory(
            node, cpu, memory, ephemeral, tuple(gpus.get((provider, node), ()))))
        pool = pools.setdefault(provider, {})
        for volume in orjson.loads(storage) if storage else ():
            pool[str(volume["class"])] = pool.get(str(volume["class"]), 0) + int(volume["bytes"])
    return {p: ProviderNodes(p, tuple(found.get(p, ())), pools.get(p, {}),
                             *gates.get(p, (None, None))) for p in {*found, *gates}}


def provider_nodes(conn: Connection, provider_ids: Sequence[str]) -> dict[str, ProviderNodes]:
    """The providers' per-node inventory (see `inventories`), read on a SQLAlchemy connection."""
    return inventories(conn.execute(repository.node_statement(provider_ids)),
                       conn.execute(repository.gpu_statement(provider_ids)),
                       conn.execute(repository.gate_statement(provider_ids)))


async def read_inventory_rows(conn: psycopg.AsyncConnection[Any], schema: str,
                              provider_ids: Sequence[str]) -> list[list[Any]]:
    """The node, GPU and gate rows of `inventories`, on an async psycopg connection."""
    rows = []
    for statement in (repository.node_statement(provider_ids),
                      repository.gpu_statement(provider_ids),
                      repository.gate_statement(provider_ids)):
        cursor = await conn.execute(*repository.compiled(statement, schema=schema))
        rows.append(await cursor.fetchall())
    return rows


def as_of_from(position: Any, last_event_at: datetime | None, partitions: Any) -> AsOf:
    """`partitions` is the JSON text of [[projection, topic, partition, next_offset], ...]."""
    return AsOf(int(position), last_event_at,
                tuple((str(p), str(t), int(n), int(o)) for p, t, n, o in json.loads(partitions)))


def read_as_of(conn: Connection) -> AsOf:
    return as_of_from(*conn.execute(repository.position_statement()).one())


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


@contextmanager
def unavailable_on_database_errors() -> Iterator[None]:
    """Database trouble (or a bad active schema name) as `Unavailable`."""
    try:
        yield
    except (DBAPIError, psycopg.errors.QueryCanceled) as exc:
        if not isinstance(getattr(exc, "orig", exc), psycopg.errors.QueryCanceled):
            raise _unavailable(exc) from exc
        raise BudgetExceeded("a database statement ran past the time budget of the request; "
                             "try again later") from exc
    except (psycopg.Error, UserError) as exc:
        raise _unavailable(exc) from exc


def _unavailable(exc: Exception) -> Unavailable:
    first = str(getattr(exc, "orig", exc)).strip().splitlines()
    return Unavailable(redact(first[0]) if first else type(exc).__name__)


class QueryService:
    """Screening answers for the HTTP routes and the `screen` command, async over
    `connections`, and the blocking snapshots of the read routes over the SQLAlchemy engine."""

    def __init__(self, engine: Engine, *, online_ttl_seconds: int = 900,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 schema: str | None = None, max_wait_seconds: float = 5.0,
                 limits: Limits = Limits()) -> None:
        self.engine = engine
        self.limits = limits
        self.connections = Connections(
            engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
            engine.pool.size(),  # type: ignore[attr-defined]
            max(1, round(limits.time_budget_seconds * 1000)))
        self._workers = asyncio.Semaphore(limits.workers)
        self._executor = ThreadPoolExecutor(limits.workers, thread_name_prefix="hwledger-query")
        self.online_ttl = timedelta(seconds=online_ttl_seconds)
        self.clock = clock
        self.fixed_schema = None if schema is None else check_schema_name(schema)
        self.max_wait_seconds = max_wait_seconds
        self._read_model: tuple[float, ReadModel] | None = None
        self._lock = threading.Lock()

    async def close(self) -> None:
        await self.connections.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()

    # -- plumbing ----------------------------------------------------------------------

    def _cached_read_model(self) -> ReadModel | None:
        cached = self._read_model
        if cached is not None and time.monotonic() - cached[0] < SCHEMA_CACHE_SECONDS:
            return cached[1]
        return None

    def read_model(self) -> ReadModel:
        """The schema to read (the pinned one, else the active one) and its shares, cached for
        a second so a rebuild switch needs no restart."""
        cached = self._cached_read_model()
        if cached is not None:
            return cached
        with self._lock:
            now = time.monotonic()
            raw = self.engine.raw_connection()
            try:
                driver = raw.driver_connection
                assert isinstance(driver, psycopg.Connection)
                schema = self.fixed_schema or check_schema_name(active_schema(driver))
                shares = repository.shares_from(driver.execute(
                    repository.SHARES_SQL, {"schema": schema}).fetchone())
                raw.rollback()
            finally:
                raw.close()
            found = ReadModel(schema, shares)
            self._read_model = (now, found)
            return found

    def active_schema(self) -> str:
        return self.read_model().schema

    async def current_read_model(self) -> ReadModel:
        """`read_model()` without blocking the event loop (a thread once a second)."""
        cached = self._cached_read_model()
        return cached if cached is not None else await asyncio.to_thread(self.read_model)

    @contextmanager
    def snapshot(self) -> Iterator[tuple[Connection, str]]:
        """A connection reading the active schema in one snapshot: a REPEATABLE READ, read-only
        transaction (the detail reads)."""
        with unavailable_on_database_errors():
            schema = self.active_schema()
            with self.engine.connect() as plain:
                conn = plain.execution_options(schema_translate_map={None: schema})
                yield conn, schema
                conn.rollback()

    @contextmanager
    def search_path_snapshot(self) -> Iterator[Connection]:
        """`snapshot()` with search_path set too, for the detail reads written as SQL text."""
        with self.snapshot() as (conn, schema):
            conn.execute(text("SELECT set_config('search_path', :s, true)"),
                         {"s": f"{schema}, public"})
            yield conn

    async def wait_for_position(self, min_position: int) -> bool:
        """Poll (bounded) until the projection reached `min_position`; True if it did."""
        deadline = time.monotonic() + self.max_wait_seconds
        while True:
            with unavailable_on_database_errors():
                schema = (await self.current_read_model()).schema
                async with self.connections.connection() as conn:
                    cursor = await conn.execute(*repository.compiled(
                        repository.position_statement(), schema=schema))
                    row = await cursor.fetchone()
            if row is not None and as_of_from(*row).position >= min_position:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)

    # -- screening ---------------------------------------------------------------------

    async def off_loop(self, budget: Budget, work: Callable[[], T]) -> T:
        """`work()` in the worker pool, waiting for a free worker no longer than the budget."""
        try:
            async with asyncio.timeout(budget.left()):
                await self._workers.acquire()
        except TimeoutError:
            raise BudgetExceeded(f"the {budget.seconds:g} s time budget of the request ran out "
                                 f"waiting for a worker (the service is busy); try again "
                                 f"later") from None
        try:
            budget.check("before its work in a worker")
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        finally:
            self._workers.release()

    def online_since(self) -> datetime:
        return self.clock() - self.online_ttl

    async def screen(self, screen: BidScreeningFilter, request: GroupRequest | None = None, *,
                     limit: int = DEFAULT_LIMIT, min_position: int | None = None,
                     after: str | None = None, paged: bool = False,
                     packing: Packing = Packing.SEARCH) -> Answer:
        """The first `limit` candidates (the prefilter) with the projection position in one
        statement: in scan order, or by owner after `after` when `paged` or `after` is given
        (then a truncated answer names where the next page starts). With `request`, the first
        `limit` placeable ones by owner: the bin-packer on the candidates' per-node inventory,
        read in batches in the same REPEATABLE READ snapshot until `limit` are placed or the
        candidates run out."""
        reached = None if min_position is None else await self.wait_for_position(min_position)
        budget = Budget.start(self.limits.time_budget_seconds)
        rejected: list[tuple[str, str]] = []
        work = None if request is None else ExactWork()
        with unavailable_on_database_errors():
            model = await self.current_read_model()
            schema = model.schema
            since = self.online_since()
            prefilter = repository.prefilter(screen, since, limit + 1, model.shares, after,
                                             ordered=paged or request is not None)
            async with self.connections.connection() as conn, \
                    conn.transaction() if request is not None else nullcontext():
                cursor = await conn.execute(*prefilter.answer_sql(schema))
                row = await cursor.fetchone()
                assert row is not None  # aggregates: always one row
                (position, last_event_at, partitions, providers_json, truncated, candidates,
                 last) = row
                check_answer_size(providers_json, self.limits)
                if request is not None and work is not None:
                    providers_json, rejected, truncated, last = await self.place_batches(
                        conn, schema, lambda start, probe: repository.prefilter(
                            screen, since, probe, model.shares, start),
                        request, limit, packing, budget, work,
                        (providers_json, truncated, last))
                    candidates = work.candidates
        as_of = replace(as_of_from(position, last_event_at, partitions),
                        min_position_reached=reached)
        return Answer(schema, as_of, providers_json, screen, prefilter, tuple(rejected),
                      truncated, candidates, last if truncated and prefilter.ordered else None,
                      work)

    async def place_batches(self, conn: psycopg.AsyncConnection[Any], schema: str,
                            batches: Callable[[str, int], repository.Prefilter],
                            request: GroupRequest, limit: int, packing: Packing,
                            budget: Budget, work: ExactWork, batch: tuple[str, bool, str | None]
                            ) -> tuple[str, list[tuple[str, str]], bool, str | None]:
        """The bin-packer over batches of candidates, starting with `batch` (the first answer
        row: candidates' JSON, more to come, last owner), each next one the prefilter
        `batches(after, probe)`, until `limit` are placed or the candidates run out: the
        placeable providers' JSON, the rejections, whether more may follow and the last owner
        examined (where the next page starts)."""
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
                self.place_batch, request, providers, rows, budget, work,
                limit - len(kept), packing))
            work.batches += 1
            kept.extend(placed)
            rejected.extend(failed)
            if work.candidates - examined < len(providers):  # `limit` placed mid-batch
                more, last = True, providers[work.candidates - examined - 1]["owner"]
            if len(kept) >= limit or not more:
                break
            assert last is not None  # more candidates follow a non-empty batch
            size = min(max(MAX_BATCH, limit), size * 2)
            cursor = await conn.execute(*batches(last, size + 1).answer_sql(schema))
            row = await cursor.fetchone()
            assert row is not None
            batch = (row[3], row[4], row[6])
        found = await self.off_loop(budget, lambda: orjson.dumps(kept).decode())
        check_answer_size(found, self.limits)
        return found, rejected, more, last

    def place_batch(self, request: GroupRequest, providers: Sequence[dict[str, Any]],
                    rows: Sequence[Iterable[Sequence[Any]]], budget: Budget, work: ExactWork,
                    wanted: int, packing: Packing
                    ) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        """`exact_placements` on one batch's inventory rows (CPU work, in a worker)."""
        return exact_placements(request, providers, inventories(*rows), self.limits, budget,
                                work, wanted=wanted, packing=packing)

    async def bid_screening(self, request: GroupRequest, *, exact: bool = False,
                            limit: int = DEFAULT_LIMIT, min_position: int | None = None,
                            after: str | None = None, paged: bool = False,
                            packing: Packing = Packing.SEARCH) -> Answer:
        return await self.screen(screening_filter(request), request if exact else None,
                                 limit=limit, min_position=min_position, after=after,
                                 paged=paged, packing=packing)
