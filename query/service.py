"""The query service's shell: its connections, the cached read model, one snapshot per answer.

`QueryService` owns a SQLAlchemy engine (pooled psycopg connections), the async psycopg
`Connections` of the screening reads (both check a connection before handing it out, so a
database blip costs no request once the server answers again), the worker pool of the
screening's CPU work and the briefly cached active schema with its planner statistics.
`screen` / `bid_screening` (async) run ONE statement per answer (`prefilter_sql`): the `asOf`
projection position and the candidates as the answer's JSON text, written by Postgres; with
`exact`, a REPEATABLE READ read-only transaction also reads the candidates' per-node
inventory for the bin-packer (`placement_run`). The detail reads (`provider`, `run`,
`hardware`) and the fleet console's `gpus` / `providers` return plain JSON-ready dicts (or
None). Database trouble raises `Unavailable`.

Each screening answer's work is bounded (`limits.Limits`): its statements by the time budget
(the connections' statement_timeout), the bin-packer by a count of placement steps and by the
deadline, the answer by a size cap; CPU work runs in a small worker pool off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from hwledger.query import fleet, prefilter_conditions, prefilter_sql, repository
from hwledger.query.answers import Answer, AsOf, as_of_from
from hwledger.query.binpacker import Packing
from hwledger.query.connections import CONNECT_TIMEOUT_SECONDS, Connections
from hwledger.query.fleet import FleetFilter, iso
from hwledger.query.group_request import GroupRequest
from hwledger.query.inventory import NodeInventory
from hwledger.query.limits import DEFAULT_LIMITS, Budget, BudgetExceeded, Limits, check_answer_size
from hwledger.query.placement_run import ExactRun, provider_nodes
from hwledger.query.screening_filter import BidScreeningFilter, screening_filter
from hwledger.schemas import gpu_specs
from hwledger.schemas.cache import BoundedCache
from hwledger.schemas.db import check_schema_name
from hwledger.schemas.errors import UserError
from hwledger.schemas.migrations import active_schema
from hwledger.schemas.secrets import redact

DEFAULT_LIMIT = 100
SCHEMA_CACHE_SECONDS = 1.0
GPU_ANSWER_SECONDS = 10.0
GPU_ANSWERS = 256


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
    """Answers for the HTTP routes and the `screen` command. Screening is async over
    `connections`; the detail reads are blocking, over the SQLAlchemy engine."""

    def __init__(self, engine: Engine, *, online_ttl_seconds: int = 900,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 schema: str | None = None, max_wait_seconds: float = 5.0,
                 limits: Limits = DEFAULT_LIMITS) -> None:
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
        self._gpu_answers: BoundedCache[FleetFilter, tuple[float, dict[str, Any]]] = \
            BoundedCache(GPU_ANSWERS)
        self._gpu_lock = threading.Lock()

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
                cursor = await conn.execute(*prefilter.answer_sql(schema))
                row = await cursor.fetchone()
                assert row is not None  # aggregates: always one row
                (position, last_event_at, partitions, providers_json, truncated, candidates,
                 last) = row
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

    # -- fleet console -----------------------------------------------------------------

    def gpus(self, wanted: FleetFilter) -> dict[str, Any]:
        """Installed and free GPUs of the online providers, per GPU kind and in total
        (`fleet.gpu_availability`), with `asOf` and the `onlineSince` cut-off.

        Counting a large fleet takes seconds (docs/performance.md), so an answer is reused for
        GPU_ANSWER_SECONDS (its `asOf` tells its age) and one count runs at a time: repeated
        console requests cannot each load the database with it."""
        with self._gpu_lock:
            cached = self._gpu_answers.get(wanted)
            if cached is not None and time.monotonic() - cached[0] < GPU_ANSWER_SECONDS:
                return cached[1]
            answer = self.count_gpus(wanted)
            self._gpu_answers.put(wanted, (time.monotonic(), answer))
            return answer

    def count_gpus(self, wanted: FleetFilter) -> dict[str, Any]:
        """`gpus`, counted now."""
        since = self.online_since()
        statement, params = repository.gpu_availability_statement(wanted, since)
        with self.snapshot() as (conn, schema):
            as_of = read_as_of(conn)
            conn.execute(text(repository.GPU_AVAILABILITY_SESSION))
            rows = conn.execute(statement, params).all()
        return {**fleet.gpu_availability(rows), "onlineSince": iso(since),
                "asOf": {"schema": schema, **as_of.to_json()}}

    def providers(self, limit: int) -> dict[str, Any]:
        """The first `limit` providers by owner, online or not, with their staleness
        (`fleet.provider_list`), the service clock `now`, `onlineSince` and `asOf`."""
        now = self.clock()
        with self.snapshot() as (conn, schema):
            as_of = read_as_of(conn)
            rows = conn.execute(repository.provider_list_statement(limit)).all()
        return {**fleet.provider_list(rows, limit, now, self.online_ttl), "now": iso(now),
                "onlineSince": iso(now - self.online_ttl),
                "asOf": {"schema": schema, **as_of.to_json()}}

    # -- detail reads ------------------------------------------------------------------

    def provider(self, owner: str) -> dict[str, Any] | None:
        if not storable(owner):
            return None
        with self.search_path_snapshot() as conn:
            row = conn.execute(text(
                "SELECT * FROM provider_inventory WHERE provider_id = :p"), {"p": owner}
            ).mappings().first()
            if row is None:
                return None
            node_rows = conn.execute(text(
                "SELECT n.node_id, n.current_snapshot_event_id, n.first_seen_at, "
                "n.last_seen_at, s.system_hardware_id, s.system_software_id "
                "FROM nodes n JOIN hardware_snapshots s "
                "ON s.event_id = n.current_snapshot_event_id "
                "WHERE n.provider_id = :p ORDER BY n.node_id"), {"p": owner}).mappings().all()
            inventory = provider_nodes(conn, [owner]).get(owner)
        free = {n.node_id: n for n in (inventory.nodes if inventory else ())}
        return {
            "owner": row["provider_id"], "hostUri": row["host_uri"],
            "lastSeenAt": iso(row["last_seen_at"]), "createdAt": iso(row["created_at"]),
            "location": row["location"], "organization": row["organization"],
            "reclamationWindow": row["reclamation_window"], "nodeCount": row["node_count"],
            "totals": {k.removeprefix("total_available_"): row[k] for k in row
                       if k.startswith("total_available_")},
            "maxNodeFree": {k.removeprefix("max_node_free_"): row[k] for k in row
                            if k.startswith("max_node_free_")},
            "gpuModels": list(row["gpu_models"]), "gpuModelsFree": list(row["gpu_models_free"]),
            "storageClasses": list(row["storage_classes"]),
            "attributes": row["self_attributes"], "signedAttributes": row["signed_attributes"],
            "auditedBy": list(row["audited_by"]),
            "nodes": [_node_json(n, free.get(n["node_id"])) for n in node_rows],
        }

    def hardware(self, system_hardware_id: str) -> dict[str, Any] | None:
        ident = _uuid(system_hardware_id)
        if ident is None:
            return None
        with self.search_path_snapshot() as conn:
            return _hardware(conn, ident)

    def run(self, owner: str | None, run_id: str) -> dict[str, Any] | None:
        """Provider `owner`'s run `run_id`; with no owner, the one run of that id (AmbiguousRun
        when several providers have one)."""
        if not storable(run_id) or (owner is not None and not storable(owner)):
            return None
        with self.search_path_snapshot() as conn:
            rows = conn.execute(text(
                "SELECT r.*, s.system_hardware_id, s.system_software_id, "
                "array(SELECT u.slot_index FROM run_gpu_usage u WHERE (u.provider_id, u.run_id) "
                "= (r.provider_id, r.run_id) ORDER BY 1) AS gpu_slots FROM runs r "
                "JOIN hardware_snapshots s ON s.event_id = r.snapshot_event_id "
                "WHERE r.run_id = :r" + ("" if owner is None else " AND r.provider_id = :p")
                + " LIMIT 2"), {"r": run_id, "p": owner}).mappings().all()
            if not rows:
                return None
            if len(rows) > 1:
                raise AmbiguousRun(run_id)
            row = rows[0]
            software = conn.execute(text(
                "SELECT * FROM system_software WHERE system_software_id = :s"),
                {"s": row["system_software_id"]}).mappings().first()
            metrics = conn.execute(text(
                "SELECT m.*, u.peak_tflops, u.tflops_utilization_pct FROM run_hardware_metrics m "
                "JOIN run_tflops_utilization u USING (provider_id, run_id) "
                "WHERE m.provider_id = :p AND m.run_id = :r"),
                {"p": row["provider_id"], "r": run_id}).mappings().first()
            hardware = _hardware(conn, str(row["system_hardware_id"]))
        return {
            "runId": row["run_id"], "owner": row["provider_id"], "node": row["node_id"],
            "status": row["status"], "startedAt": iso(row["started_at"]),
            "finishedAt": iso(row["finished_at"]), "taskRef": row["task_ref"],
            "modelRef": row["model_ref"], "snapshotEventId": str(row["snapshot_event_id"]),
            "resources": {"cpuMillicores": row["cpu_millicores"],
                          "memoryBytes": row["memory_bytes"],
                          "ephemeralStorageBytes": row["ephemeral_storage_bytes"],
                          "gpuSlots": list(row["gpu_slots"])},
            "hardware": hardware,
            "software": _plain(software, drop=("system_software_id",)),
            "metrics": _plain(metrics, drop=("provider_id", "run_id", "system_hardware_id",
                                             "system_software_id")),
        }

    def ready(self) -> dict[str, Any]:
        with self.search_path_snapshot() as conn:
            as_of = read_as_of(conn)
            conn.execute(text("SELECT 1 FROM provider_inventory LIMIT 1")).all()
        return {"status": "ready", "schema": self.active_schema(), "position": as_of.position}


class AmbiguousRun(Exception):
    """`GET /v1/runs/{run_id}` names a run id that several providers use."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} exists for more than one provider; ask "
                         f"/v1/providers/{{owner}}/runs/{run_id}")


def storable(key: str) -> bool:
    """Could Postgres text hold this key? (No NUL, valid UTF-8.) Others cannot be found."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in key


def _uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _plain(row: Mapping[Any, Any] | None, drop: Sequence[str] = ()) -> dict[str, Any] | None:
    if row is None:
        return None
    return {k: (str(v) if isinstance(v, uuid.UUID) else iso(v) if isinstance(v, datetime)
                else v) for k, v in row.items() if k not in drop}


def _node_json(row: Mapping[Any, Any], free: NodeInventory | None) -> dict[str, Any]:
    return {
        "node": row["node_id"], "snapshotEventId": str(row["current_snapshot_event_id"]),
        "systemHardwareId": str(row["system_hardware_id"]),
        "systemSoftwareId": str(row["system_software_id"]),
        "firstSeenAt": iso(row["first_seen_at"]), "lastSeenAt": iso(row["last_seen_at"]),
        "free": None if free is None else {
            "cpuMillicores": free.cpu_millicores, "memoryBytes": free.memory_bytes,
            "ephemeralStorageBytes": free.ephemeral_bytes,
            "gpuSlots": sorted(slot for g in free.gpus for slot in g.slots)},
    }


def _hardware(conn: Connection, system_hardware_id: str) -> dict[str, Any] | None:
    row = conn.execute(text("SELECT * FROM system_hardware WHERE system_hardware_id = :h"),
                       {"h": system_hardware_id}).mappings().first()
    if row is None:
        return None
    gpus = conn.execute(text(
        "SELECT l.slot_index, g.*, n.name AS slot_native_interface, "
        "a.name AS actual_interface FROM system_gpu_link l "
        "JOIN gpu_hardware g USING (gpu_hardware_id) "
        "LEFT JOIN interface_type n ON n.interface_type_id = l.slot_native_interface_type_id "
        "LEFT JOIN interface_type a ON a.interface_type_id = l.actual_interface_type_id "
        "WHERE l.system_hardware_id = :h ORDER BY l.slot_index"),
        {"h": system_hardware_id}).mappings().all()
    models = sorted({(g["pci_vendor_id"], g["pci_device_id"]) for g in gpus})
    specs = gpu_specs.spec_documents(
        conn.execute(gpu_specs.specs_statement(models)).mappings().all(),
        conn.execute(gpu_specs.tflops_statement(models)).mappings().all(),
        conn.execute(gpu_specs.formats_statement()).scalars().all())
    found = _plain(row) or {}
    found["gpus"] = [{**(_plain(g) or {}),
                      "spec": specs.get((g["pci_vendor_id"], g["pci_device_id"]))} for g in gpus]
    return json.loads(json.dumps(found, default=str))  # type: ignore[no-any-return]
