"""The query service's shell: its connections, the cached read model, one consistent read
per answer.

`QueryService` owns a SQLAlchemy engine (pooled psycopg connections), the async psycopg
`Connections` of the screening reads (both check a connection before handing it out, so a
database blip costs no request once the server answers again), the worker pool of the
screening's CPU work and the briefly cached active schema with its planner statistics.
`screen` / `bid_screening` (async) run ONE statement per answer (`prefilter_sql`): the `asOf`
projection position and the candidates as the answer's JSON text, written by Postgres; with
`exact`, a REPEATABLE READ read-only transaction also reads the candidates' per-node
inventory for the bin-packer (`placement_run`). `repeatable_read` serves the read routes
(`hwledger.query.reads`). Database trouble raises `Unavailable`.

Each screening answer's work is bounded (`limits.Limits`): its statements by the time budget
(the connections' statement_timeout), the bin-packer by a count of placement steps and by the
deadline, the answer by a size cap; CPU work runs in a small worker pool off the event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import psycopg
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from hwledger.query import prefilter_conditions, prefilter_sql, repository
from hwledger.query.answers import Answer, AsOf, as_of_from
from hwledger.query.binpacker import Packing
from hwledger.query.connections import CONNECT_TIMEOUT_SECONDS, Connections
from hwledger.query.group_request import GroupRequest
from hwledger.query.limits import DEFAULT_LIMITS, Budget, BudgetExceeded, Limits, check_answer_size
from hwledger.query.placement_run import ExactRun, answer_row
from hwledger.query.screening_filter import BidScreeningFilter, screening_filter
from hwledger.schemas.db import check_schema_name
from hwledger.schemas.errors import UserError
from hwledger.schemas.migrations import active_schema
from hwledger.schemas.secrets import redact

DEFAULT_LIMIT = 100
SCHEMA_CACHE_SECONDS = 1.0


T = TypeVar("T")


class Unavailable(Exception):
    """The database cannot answer right now (down, or the active schema is missing)."""


@dataclass(frozen=True)
class ReadModel:
    """The schema the service reads and its statistics' `prefilter_conditions.Shares`."""

    schema: str
    shares: prefilter_conditions.Shares


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


def read_as_of(conn: Connection) -> AsOf:
    return as_of_from(*conn.execute(repository.position_statement()).one())


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
    `connections`, and the blocking REPEATABLE READ reads of the read routes over the
    SQLAlchemy engine."""

    def __init__(self, engine: Engine, *, online_ttl_seconds: int = 900,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 schema: str | None = None, max_wait_seconds: float = 5.0,
                 limits: Limits = DEFAULT_LIMITS,
                 schema_cache_seconds: float = SCHEMA_CACHE_SECONDS) -> None:
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
        self.schema_cache_seconds = schema_cache_seconds
        self._read_model: tuple[float, ReadModel] | None = None
        self._lock = threading.Lock()

    async def close(self) -> None:
        await self.connections.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()

    # -- plumbing ----------------------------------------------------------------------

    def _cached_read_model(self) -> ReadModel | None:
        cached = self._read_model
        if cached is not None and time.monotonic() - cached[0] < self.schema_cache_seconds:
            return cached[1]
        return None

    def read_model(self) -> ReadModel:
        """The schema to read (the pinned one, else the active one) and its shares, cached for
        `schema_cache_seconds` (a second) so a rebuild switch needs no restart."""
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
                shares = prefilter_conditions.shares_from(driver.execute(
                    prefilter_conditions.SHARES_SQL, {"schema": schema}).fetchone())
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
    def repeatable_read(self) -> Iterator[tuple[Connection, str]]:
        """A connection reading the active schema as of one moment: a REPEATABLE READ, read-only
        transaction (the detail reads)."""
        with unavailable_on_database_errors():
            schema = self.active_schema()
            with self.engine.connect() as plain:
                conn = plain.execution_options(schema_translate_map={None: schema})
                yield conn, schema
                conn.rollback()

    @contextmanager
    def repeatable_read_on_search_path(self) -> Iterator[Connection]:
        """`repeatable_read()` with search_path set too, for the detail reads written as SQL
        text."""
        with self.repeatable_read() as (conn, schema):
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
        read in batches in the same REPEATABLE READ read until `limit` are placed or the
        candidates run out."""
        reached = None if min_position is None else await self.wait_for_position(min_position)
        budget = Budget.start(self.limits.time_budget_seconds)
        rejected: list[tuple[str, str]] = []
        run = None if request is None else ExactRun(request, limit, packing, self.limits,
                                                    budget, self.off_loop)
        with unavailable_on_database_errors():
            model = await self.current_read_model()
            schema = model.schema
            since = self.online_since()
            prefilter = prefilter_sql.prefilter(screen, since, limit + 1, model.shares, after,
                                                ordered=paged or request is not None)
            async with self.connections.connection() as conn, \
                    conn.transaction() if request is not None else nullcontext():
                (position, last_event_at, partitions, providers_json, truncated, candidates,
                 last) = await answer_row(conn, prefilter, schema)
                check_answer_size(providers_json, self.limits)
                if run is not None:
                    providers_json, rejected, truncated, last = await run.place_batches(
                        conn, schema, lambda start, probe: prefilter_sql.prefilter(
                            screen, since, probe, model.shares, start),
                        (providers_json, truncated, last))
                    candidates = run.work.candidates
        as_of = replace(as_of_from(position, last_event_at, partitions),
                        min_position_reached=reached)
        return Answer(schema, as_of, providers_json, screen, prefilter, tuple(rejected),
                      truncated, candidates, last if truncated and prefilter.ordered else None,
                      None if run is None else run.work)

    async def bid_screening(self, request: GroupRequest, *, exact: bool = False,
                            limit: int = DEFAULT_LIMIT, min_position: int | None = None,
                            after: str | None = None, paged: bool = False,
                            packing: Packing = Packing.SEARCH) -> Answer:
        return await self.screen(screening_filter(request), request if exact else None,
                                 limit=limit, min_position=min_position, after=after,
                                 paged=paged, packing=packing)
