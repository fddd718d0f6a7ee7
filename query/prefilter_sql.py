"""The prefilter statement: ONE parameterized SELECT over `provider_inventory` per request.

`prefilter` turns a `BidScreeningFilter` (its `prefilter_conditions`) into a `Prefilter`: the
filter's shape, built into a statement once per shape (the common conditions behind an
`OFFSET 0` fence), and the values it binds. Its `answer` statement returns, in one row, the
projection position and the candidates as the HTTP answer's JSON text, written by Postgres;
`SCREENING_SESSION` is the session the screening statements are planned and run with. Pure:
the service runs the statements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    false,
    func,
    literal_column,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by

from hwledger.query.fleet import RFC3339_SQL
from hwledger.query.prefilter_conditions import NO_SHARES, Shares, clause, conditions
from hwledger.query.repository import compiled, position_statement
from hwledger.query.screening_filter import BidScreeningFilter
from hwledger.schemas.tables import provider_inventory

SCREENING_SESSION = ("SET TIME ZONE 'UTC'; SET cpu_index_tuple_cost = 0.03; "
                     "SET max_parallel_workers_per_gather = 0")
"""Session settings the screening statements are planned and run with. Postgres writes the
answer's timestamps in UTC. An index tuple is priced 0.03 (the default is 0.005): a GIN bitmap
scan decodes and stores every matching TID before the first row comes out, which the default
underprices, so the planner built 15,000-entry bitmaps (~2 ms) where a scan that stops at the
limit reads ~1,500 rows (~0.5 ms); tokens free at under ~4% of providers still use the GIN
index. No parallel workers: answers stop at a few hundred rows, and many requests at once
already use every core, so a Gather only adds worker start-up
(docs/adr/0025-screening-session-planner-settings.md)."""

Shape = tuple[tuple[str, str], ...]


FENCED = frozenset({"glob", "all_of", "any_of", "common_gpu", "common_gpu_node",
                    "common_attribute"})
EMPTY_TEXT_ARRAY: ColumnElement[Any] = literal_column("'{}'::text[]")


def _rfc3339(timestamp: ColumnElement[Any]) -> ColumnElement[str]:
    """A timestamptz as text in `fleet.iso`'s format (NULL stays NULL)."""
    return func.to_char(func.timezone("UTC", timestamp), literal_column(f"'{RFC3339_SQL}'"))


def _key(name: str) -> ColumnElement[Any]:
    """A JSON key, as SQL text (keys are this module's constants, never request values)."""
    return literal_column(f"'{name}'")


def _answer(candidates: Select[Any], limited: bool, ordered: bool) -> Select[Any]:
    """ONE row: the projection position, the candidates as the JSON array of the HTTP answer
    (ordered by owner), whether the limit cut the answer short, how many candidates the array
    holds (for the service's metrics, without parsing it) and the answer's last owner (a page's
    cursor).

    With a limit, `:limit` is the probe size (the answer's limit plus one): the candidates are
    the first `:limit` (by owner when `ordered`, else in scan order), of which the first
    `:limit - 1` are shown, exactly the rows a client fetching `:limit` rows would keep.
    Postgres writes the JSON (timestamps as `fleet.iso` writes them), so the service passes the
    text through instead of building Python objects.
    """
    rows = candidates.subquery("candidate_rows")
    number = func.row_number().over(order_by=rows.c.provider_id if ordered else None)
    found = select(rows, number.label("n")).subquery("candidate")
    c = found.c
    provider = func.json_build_object(
        _key("owner"), c.provider_id, _key("hostUri"), c.host_uri,
        _key("auditedBy"), func.coalesce(c.audited_by, EMPTY_TEXT_ARRAY),
        _key("gpuModels"), func.coalesce(c.gpu_models, EMPTY_TEXT_ARRAY),
        _key("lastSeenAt"), _rfc3339(c.last_seen_at), _key("createdAt"), _rfc3339(c.created_at),
        _key("location"), c.location, _key("organization"), c.organization)
    providers = func.json_agg(aggregate_order_by(provider, c.provider_id))
    last = func.max(c.provider_id)
    truncated: ColumnElement[bool] = false()
    shown: ColumnElement[int] = func.count()
    if limited:
        probe = bindparam("limit", type_=Integer)
        providers = providers.filter(c.n < probe)  # type: ignore[assignment]
        last = last.filter(c.n < probe)  # type: ignore[assignment]
        truncated = func.count() >= probe
        shown = func.count().filter(c.n < probe)
    answer = select(
        cast(func.coalesce(providers, literal_column("'[]'::json")), Text).label("providers"),
        truncated.label("truncated"), shown.label("candidates"), last.label("last")
    ).select_from(found).subquery("answer")
    position = position_statement().subquery("position")
    return select(position, answer).select_from(position.join(answer, true()))


@lru_cache(maxsize=4096)
def _statements(shape: Shape, limited: bool, ordered: bool
                ) -> tuple[Select[Any], Select[Any]]:
    """The prefilter, and the answer statement over it (`_answer`), for one shape of filter.
    Built once per shape: a request only binds values. With a limit and `ordered`, the
    candidates are the first by owner (`provider_id`, the order a cursor walks); unordered, the
    first the scan finds, so it stops at the limit instead of sorting every match (an ordered
    answer costs a sort of the matches: docs/performance.md, "Ordered prefilter plans").

    Glob attributes, signedBy and common GPU tokens are checked outside an `OFFSET 0` subquery
    holding the other conditions. Postgres prices a glob's per-row `jsonb_each_text` as if it
    ran on every row, and an auditor typically signed a large part of the fleet, as a common
    GPU model is free at 20-45% of it, yet (assuming independent conditions) it would AND
    their 15-50k-row GIN bitmaps with the others' (10-25 ms at 100k providers) where a scan
    stopping after `limit` rows takes ~1 ms (docs/adr/0023-offset-0-fence-in-postgres.md,
    docs/adr/0024-planner-guards-from-statistics.md). An ordered statement has no fence: its
    plan walks the primary key in owner order and stops at the limit, and a fence would make
    it sort every row the inner conditions pass first (docs/performance.md, "Issue 15, third
    step").
    """
    inv = provider_inventory.c
    inner = {c.name: c for c in inv}
    fenced = [] if limited and ordered else [(k, n) for k, n in shape if k in FENCED]
    output = [inv.provider_id, inv.host_uri, inv.audited_by, inv.gpu_models, inv.last_seen_at,
              inv.created_at, inv.location, inv.organization]
    statement = select(*output).where(
        and_(true(), *(clause(k, n, inner) for k, n in shape if (k, n) not in fenced)))
    if limited and ordered:
        statement = statement.order_by(inv.provider_id)
    if fenced:
        extra = [inv.storage_classes, inv.self_attributes, inv.gpu_models_free,
                 inv.gpu_node_tokens_free]
        screened = statement.add_columns(*extra).offset(0).subquery("screened")
        outer = {c.name: c for c in screened.c}
        statement = select(*(screened.c[c.name] for c in output)).where(
            *(clause(k, n, outer) for k, n in fenced))
    if limited:
        statement = statement.limit(bindparam("limit", type_=Integer))
    return statement, _answer(statement, limited, ordered)


@lru_cache(maxsize=4096)
def _answer_sql(shape: Shape, limited: bool, ordered: bool, schema: str
                ) -> tuple[str, dict[str, Any]]:
    """The answer statement compiled once per shape and schema: its SQL text (tables qualified
    with `schema`) and the constants bound inside it."""
    return compiled(_statements(shape, limited, ordered)[1], schema=schema)


def driver_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Values as psycopg binds them: JSON objects (self attributes) wrapped as jsonb."""
    return {k: Jsonb(v) if isinstance(v, dict) else v for k, v in params.items()}


@dataclass(frozen=True)
class Prefilter:
    """The prefilter of one request: its filter shape, whether it has a limit, whether it lists
    by owner (`ordered`: pages and `exact` batches), and the values.
    `statement` is the prefilter alone, `answer` the ONE statement the service runs (`_answer`:
    the projection position, the candidates as JSON, truncated)."""

    shape: Shape
    limited: bool
    params: dict[str, Any]
    ordered: bool = False

    @property
    def statement(self) -> Select[Any]:
        return _statements(self.shape, self.limited, self.ordered)[0]

    @property
    def answer(self) -> Select[Any]:
        return _statements(self.shape, self.limited, self.ordered)[1]

    @property
    def prepare(self) -> bool | None:
        """How the service executes the answer (psycopg's `prepare`): ordered statements are
        never prepared, so each is planned with its values. psycopg prepares a statement one
        connection ran five times, and Postgres then may run its generic plan, blind to how
        rare the bound tokens are: for pages it walked the primary key for 100-370 ms where
        the plan for the values ran in ~1 ms (ADR 0025). Scan-order statements stop at the
        limit whatever the plan, and keep psycopg's default (None: prepared when repeated)."""
        return False if self.ordered else None

    def answer_sql(self, schema: str) -> tuple[str, dict[str, Any]]:
        """The answer statement's SQL for `schema` and every value it binds, driver-ready."""
        sql, constants = _answer_sql(self.shape, self.limited, self.ordered, schema)
        return sql, {**constants, **driver_params(self.params)}


def prefilter(screen: BidScreeningFilter, online_since: datetime | None,
              limit: int | None = None, shares: Shares = NO_SHARES, after: str | None = None,
              ordered: bool = False) -> Prefilter:
    """One parameterized SELECT of the candidate providers: with a limit, the first `limit`
    in scan order, or by owner when `ordered` or after `after` (a page's cursor); without,
    every match in scan order."""
    found = conditions(screen, online_since, shares, after)
    params: dict[str, Any] = {}
    for kind, name, value in found:
        if kind == "glob":
            params[f"{name}_prefix"], params[f"{name}_value"] = value
        else:
            params[name] = value
    if limit is not None:
        params["limit"] = limit
    return Prefilter(tuple((k, n) for k, n, _ in found), limit is not None, params,
                     ordered or after is not None)

