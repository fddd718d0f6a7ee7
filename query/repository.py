"""SQL of the query service, composed with SQLAlchemy 2 Core; every value is a bound parameter.

`prefilter` turns a `BidScreeningFilter` into ONE parameterized statement over
`provider_inventory` (DESIGN section 6), built once per filter shape. `node_statement` /
`gpu_statement` read the candidates' per-node free capacity for the bin-packer from the
`node_free` / `node_gpus` views, the same inventory rule the projector's provider_inventory
totals come from; `position_statement` reads the projection position for `asOf`. The tables
are `hwledger.schemas.tables`, declared without a schema: callers set the transaction's
search_path (or a schema translate map) to the active schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    Numeric,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    literal_column,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, aggregate_order_by
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from hwledger.query.aggregator import BidScreeningFilter
from hwledger.query.fleet import RFC3339_SQL, FleetFilter
from hwledger.schemas.tables import node_free, node_gpus, projection_offsets, provider_inventory
from hwledger.schemas.units import GiB

TOTAL_COLUMNS = (
    ("total_cpu", "total_available_cpu"),
    ("total_memory", "total_available_memory"),
    ("total_gpu", "total_available_gpu"),
    ("total_ephemeral", "total_available_ephemeral"),
    ("total_persistent", "total_available_persistent"),
    ("max_node_cpu", "max_node_free_cpu"),
    ("max_node_memory", "max_node_free_memory"),
    ("max_node_gpu", "max_node_free_gpu"),
    ("total_leased_ip", "total_available_leased_ip"),
)
"""Filter field -> the provider_inventory column that must be at least as large (a null
`total_available_leased_ip`, a provider without an IP operator, fails when IPs are asked for;
none asked for adds no clause, Akash AC20/AC21)."""


_DIALECT = PGDialect_psycopg()  # type: ignore[no-untyped-call]


def compiled(statement: Select[Any], params: Mapping[str, Any] | None = None, *,
             schema: str | None = None) -> tuple[str, dict[str, Any]]:
    """The statement's SQL text (placeholders, never values) and its parameters: the values
    bound inside the statement plus `params` (the values of a `Prefilter`). With `schema`, the
    tables are qualified with it (else they follow the search_path)."""
    result = statement.compile(
        dialect=_DIALECT, schema_translate_map=None if schema is None else {None: schema},
        render_schema_translate=schema is not None)
    return str(result), {**result.params, **(params or {})}


def _text_array(values: Sequence[str]) -> ColumnElement[Any]:
    """One bound parameter holding the whole list, rendered `%(param)s::TEXT[]`."""
    return bindparam(None, list(values), type_=ARRAY(Text))


def _text_array_param(name: str) -> ColumnElement[Any]:
    return bindparam(name, type_=ARRAY(Text))


def glob_clause(name: str, attributes: ColumnElement[Any]) -> ColumnElement[bool]:
    """Some self attribute whose key is `:<name>_prefix` plus characters other than `/`
    (the trailing `*` never crosses `/`) has the value `:<name>_value`."""
    prefix = bindparam(f"{name}_prefix", type_=Text)
    pairs = func.jsonb_each_text(attributes).table_valued("key", "value").alias()
    rest = func.substr(pairs.c.key, func.length(prefix) + 1)
    return exists(select(literal(1)).select_from(pairs).where(
        func.starts_with(pairs.c.key, prefix),
        func.strpos(rest, "/") == 0,
        pairs.c.value == bindparam(f"{name}_value", type_=Text),
    ))


Condition = tuple[str, str, Any]  # (kind, parameter name, value)


# A condition this common stays off the GIN path (docs/adr/0024-planner-guards-from-statistics.md).
COMMON_SHARE = 0.2
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
SHARES_SQL = (
    "SELECT g.most_common_elems::text::text[], g.most_common_elem_freqs, "
    "a.most_common_vals::text::jsonb[], a.most_common_freqs FROM (SELECT) AS one "
    "LEFT JOIN pg_stats g ON g.schemaname = %(schema)s "
    "AND g.tablename = 'provider_inventory' AND g.attname = 'gpu_models_free' "
    "LEFT JOIN pg_stats a ON a.schemaname = %(schema)s "
    "AND a.tablename = 'provider_inventory' AND a.attname = 'self_attributes'")


@dataclass(frozen=True)
class Shares:
    """The share of providers with each GPU token free and with each self attribute, as the
    planner's statistics (ANALYZE) count them: a token or attribute they do not list is taken
    as rare. Read with SHARES_SQL (see `shares_from`)."""

    gpu_tokens: Mapping[str, float] = field(default_factory=dict)
    attributes: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def common_gpu(self, tokens: Sequence[str]) -> bool:
        return sum(self.gpu_tokens.get(t, 0.0) for t in tokens) >= COMMON_SHARE

    def common_attribute(self, key: str, value: str) -> bool:
        return self.attributes.get((key, value), 0.0) >= COMMON_SHARE


def shares_from(row: Sequence[Any] | None) -> Shares:
    """`Shares` from the row of SHARES_SQL: the GPU tokens' element frequencies, and each
    attribute's share summed over the most common whole `self_attributes` documents (a lower
    bound, exact when they cover the fleet)."""
    if row is None:
        return Shares()
    tokens, token_freqs, documents, document_freqs = row
    attributes: dict[tuple[str, str], float] = {}
    for document, freq in zip(documents or (), document_freqs or (), strict=True):
        for key, value in (document.items() if isinstance(document, dict) else ()):
            if isinstance(value, str):
                attributes[(key, value)] = attributes.get((key, value), 0.0) + freq
    # most_common_elem_freqs ends with three more numbers (min, max, null share): zip drops them
    return Shares(dict(zip(tokens or (), token_freqs or (), strict=False)), attributes)


def conditions(screen: BidScreeningFilter, online_since: datetime | None,
               shares: Shares = Shares(), after: str | None = None) -> list[Condition]:
    """Every condition of the prefilter (DESIGN section 6), to be AND'd: its kind, the name of
    its parameter, and the value bound to it. A unit's GPU tokens that together are free at
    COMMON_SHARE of the providers or more, and an attribute at least that common (per
    `shares`), are `common_gpu` / `common_attribute` conditions, checked behind the fence
    (`_statements`) instead of through a GIN index. `after` (a page's cursor) keeps the
    providers after that one in the answer's order."""
    found: list[Condition] = []
    if after is not None:
        found.append(("after", "after", after))
    if online_since is not None:
        found.append(("online", "online_since", online_since))
    for name, column in TOTAL_COLUMNS:
        if getattr(screen, name) > 0:
            found.append((column, name, getattr(screen, name)))
    if screen.reclamation_window is not None:  # a provider without a window (null) fails
        found.append(("reclamation_window", "reclamation_window", screen.reclamation_window))
    for index, unit in enumerate(screen.units):
        if unit.gpu_tokens:
            found.append(("common_gpu" if shares.common_gpu(unit.gpu_tokens) else "gpu",
                          f"unit{index}_gpu_tokens", list(unit.gpu_tokens)))
        if unit.storage_classes:
            found.append(("storage", f"unit{index}_storage_classes",
                          list(unit.storage_classes)))
    if screen.signed_by_all_of:
        found.append(("all_of", "signed_by_all_of", list(screen.signed_by_all_of)))
    if screen.signed_by_any_of:
        found.append(("any_of", "signed_by_any_of", list(screen.signed_by_any_of)))
    for index, attr in enumerate(screen.attributes):
        if attr.key.endswith("*"):
            found.append(("glob", f"attribute{index}", (attr.key[:-1], attr.value)))
        else:
            kind = "common_attribute" if shares.common_attribute(attr.key, attr.value) \
                else "attribute"
            found.append((kind, f"attribute{index}", {attr.key: attr.value}))
    return found


def clause(kind: str, name: str, columns: Mapping[str, ColumnElement[Any]]
           ) -> ColumnElement[bool]:
    """One condition on `columns` (provider_inventory's, or the fenced subquery's)."""
    if kind == "after":
        return columns["provider_id"] > bindparam(name, type_=Text)
    if kind == "online":  # coalesce: nearly every provider is online, so an index on
        # last_seen_at would only add a useless bitmap to the plan (see _statements)
        return func.coalesce(columns["last_seen_at"],
                             literal_column("'-infinity'::timestamptz")) >= \
            bindparam(name, type_=DateTime(timezone=True))
    if kind in ("gpu", "common_gpu"):
        return columns["gpu_models_free"].bool_op("&&")(_text_array_param(name))
    if kind == "storage":
        return columns["storage_classes"].bool_op("@>")(_text_array_param(name))
    if kind == "all_of":
        return columns["audited_by"].bool_op("@>")(_text_array_param(name))
    if kind == "any_of":
        return columns["audited_by"].bool_op("&&")(_text_array_param(name))
    if kind in ("attribute", "common_attribute"):
        return columns["self_attributes"].bool_op("@>")(bindparam(name, type_=JSONB))
    if kind == "glob":
        return glob_clause(name, columns["self_attributes"])
    return columns[kind] >= bindparam(name, type_=BigInteger)


Shape = tuple[tuple[str, str], ...]


FENCED = frozenset({"glob", "all_of", "any_of", "common_gpu", "common_attribute"})
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
    docs/adr/0024-planner-guards-from-statistics.md).
    """
    inv = provider_inventory.c
    inner = {c.name: c for c in inv}
    fenced = [(kind, name) for kind, name in shape if kind in FENCED]
    output = [inv.provider_id, inv.host_uri, inv.audited_by, inv.gpu_models, inv.last_seen_at,
              inv.created_at, inv.location, inv.organization]
    statement = select(*output).where(
        and_(true(), *(clause(k, n, inner) for k, n in shape if k not in FENCED)))
    if limited and ordered:
        statement = statement.order_by(inv.provider_id)
    if fenced:
        extra = [inv.storage_classes, inv.self_attributes, inv.gpu_models_free]
        screened = statement.add_columns(*extra).offset(0).subquery("screened")
        outer = {c.name: c for c in screened.c}
        statement = select(*(screened.c[c.name] for c in output)).where(
            *(clause(k, n, outer) for k, n in fenced))
        if limited and ordered:
            statement = statement.order_by(screened.c.provider_id)
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

    def answer_sql(self, schema: str) -> tuple[str, dict[str, Any]]:
        """The answer statement's SQL for `schema` and every value it binds, driver-ready."""
        sql, constants = _answer_sql(self.shape, self.limited, self.ordered, schema)
        return sql, {**constants, **driver_params(self.params)}


def prefilter(screen: BidScreeningFilter, online_since: datetime | None,
              limit: int | None = None, shares: Shares = Shares(), after: str | None = None,
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


def node_statement(provider_ids: Sequence[str]) -> Select[Any]:
    """Per node of the given providers: free cpu/memory/ephemeral and its storage volumes as
    JSON text (the `node_free` view: the inventory rule the provider_inventory totals come
    from)."""
    f = node_free.c
    return (select(f.provider_id, f.node_id, f.cpu, f.memory, f.ephemeral,
                   cast(f.storage, Text))
            .where(f.provider_id == any_(_text_array(provider_ids)))
            .order_by(f.provider_id, f.node_id))


def gpu_statement(provider_ids: Sequence[str]) -> Select[Any]:
    """The free GPUs of the given providers' current snapshots (the `node_gpus` view), one row
    per node and kind (vendor, model, vram, interface) with the slot indices ascending."""
    g = node_gpus.c
    kind = (g.provider_id, g.node_id, g.vendor, g.model, g.vram_bytes, g.interface)
    return (select(*kind, func.array_agg(aggregate_order_by(g.slot_index, g.slot_index)))
            .where(g.provider_id == any_(_text_array(provider_ids)), g.free)
            .group_by(*kind)
            .order_by(g.provider_id, g.node_id, func.min(g.slot_index)))


def gate_statement(provider_ids: Sequence[str]) -> Select[Any]:
    """The provider-wide figures the bin-packer's gate checks before any node
    (`binpacker.provider_gate`): free leased IPs (null: no IP operator) and the reclamation
    window (null: none offered)."""
    inv = provider_inventory.c
    return (select(inv.provider_id, inv.total_available_leased_ip, inv.reclamation_window)
            .where(inv.provider_id == any_(_text_array(provider_ids))))


@cache
def position_statement() -> Select[Any]:
    """The projection position: the sum of next offsets, the newest event time the projector
    recorded (`last_event_at`; null before its first batch), and the per-partition offsets as
    a JSON array of [projection, topic, partition, next_offset]."""
    po = projection_offsets.c
    partitions = func.json_agg(aggregate_order_by(
        func.json_build_array(po.projection, po.topic, po.partition, po.next_offset),
        po.projection, po.topic, po.partition))
    return select(func.coalesce(func.sum(po.next_offset), 0).label("position"),
                  func.max(po.last_event_at).label("last_event_at"),
                  cast(func.coalesce(partitions, func.json_build_array()), Text)
                  .label("partitions"))


def _token(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """A vendor or model name as its token (`tokens.gpu_tokens`: trimmed, lowercased)."""
    return func.lower(func.btrim(column))




GPU_AVAILABILITY_SESSION = "SET LOCAL work_mem = '64MB'"
"""Set in the transaction of `gpu_availability_statement`: its first grouping takes every GPU
slot of the online fleet (1.3 million at 100,000 providers), which at the default 4 MB is
sorted on disk; in memory it is hashed, about half the time (docs/performance.md)."""


def gpu_availability_statement(fleet: FleetFilter, online_since: datetime
                               ) -> tuple[Select[Any], dict[str, Any]]:
    """Installed and free GPUs of the online providers (the prefilter's `online` rule) per
    vendor, model, RAM (whole GiB) and interface family (`binpacker.matches`), and the
    providers offering them, plus one totals row (`grouped` false, last); ordered by the key
    (text by code point). The filters narrow the GPUs (vendor, model) and the providers
    (region, auditor). The slots are first counted per provider and kind, so the providers of
    a kind are a count of rows, not a distinct count over every slot."""
    g, inv = node_gpus.c, provider_inventory.c
    interface = func.lower(func.btrim(g.interface))
    kind = (_token(g.vendor).label("vendor"), _token(g.model).label("model"),
            cast(func.round(cast(g.vram_bytes, Numeric) / GiB), Integer).label("ram_gib"),
            case((func.starts_with(interface, "sxm"), literal("sxm")), else_=interface)
            .label("interface"))
    columns = {c.name: c for c in inv}
    params: dict[str, Any] = {"online_since": online_since}
    clauses = [clause("online", "online_since", columns)]
    if fleet.region is not None:
        clauses.append(clause("attribute", "region", columns))
        params["region"] = {"region": fleet.region}
    if fleet.auditor is not None:
        clauses.append(clause("all_of", "auditor", columns))
        params["auditor"] = [fleet.auditor]
    for index, name in ((0, "vendor"), (1, "model")):
        if getattr(fleet, name) is not None:
            clauses.append(kind[index].element == bindparam(name, getattr(fleet, name),
                                                             type_=Text))
    per_provider = (
        select(*kind, g.provider_id, func.count().label("installed"),
               func.count().filter(g.free).label("free"))
        .select_from(node_gpus.join(provider_inventory, inv.provider_id == g.provider_id))
        .where(*clauses).group_by(*(k.element for k in kind), g.provider_id)
        .subquery("per_provider"))
    r = per_provider.c
    keys = (r.vendor, r.model, r.ram_gib, r.interface)
    providers = func.count(r.provider_id.distinct())
    statement = (select(
        func.grouping(*keys) == 0, *keys, func.sum(r.installed), func.sum(r.free), providers,
        providers.filter(r.free > 0))
        .group_by(func.grouping_sets(tuple_(*keys), tuple_()))
        .order_by(r.vendor.collate("C"), r.model.collate("C"), r.ram_gib,
                  r.interface.collate("C")))
    return statement, params


def provider_list_statement(limit: int) -> Select[Any]:
    """The first `limit + 1` providers by owner (one more tells that the list was cut): owner,
    host URI, `region` self attribute, auditors, GPU tokens, free GPUs, last seen."""
    inv = provider_inventory.c
    return (select(inv.provider_id, inv.host_uri, inv.self_attributes["region"].astext,
                   inv.audited_by, inv.gpu_models, inv.total_available_gpu, inv.last_seen_at)
            .order_by(inv.provider_id).limit(bindparam("limit", limit + 1, type_=Integer)))
