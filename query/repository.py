"""SQL of the query service's reads, composed with SQLAlchemy 2 Core; every value is a bound
parameter.

`compiled` turns a statement into SQL text and parameters. `inventory_statement` reads the
candidates' per-node free capacity for the bin-packer from provider_nodes, which the projector
writes from the same views and in the same transaction as the provider_inventory totals;
`position_statement` reads the projection position for `asOf`; the fleet
console's statements count GPUs and list providers. The prefilter itself is `prefilter_sql`.
The tables are `hwledger.schemas.tables`, declared without a schema: callers set the
transaction's search_path (or a schema translate map) to the active schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Numeric,
    Select,
    Text,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from hwledger.query.fleet import FleetFilter
from hwledger.query.prefilter_conditions import clause
from hwledger.schemas.tables import (
    node_gpus,
    projection_offsets,
    provider_inventory,
    provider_nodes,
)
from hwledger.schemas.units import GiB

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


def inventory_statement(provider_ids: Sequence[str]) -> Select[Any]:
    """Per given provider, what the bin-packer reads: its provider_nodes row as JSON text (the
    nodes with their free capacity and GPU groups, the persistent pools; null when it has none)
    and the provider-wide figures its gate checks before any node (`binpacker.provider_gate`):
    free leased IPs (null: no IP operator) and the reclamation window (null: none offered)."""
    inv, pn = provider_inventory.c, provider_nodes.c
    return (select(inv.provider_id, cast(pn.nodes, Text), cast(pn.persistent, Text),
                   inv.total_available_leased_ip, inv.reclamation_window)
            .select_from(provider_inventory.outerjoin(provider_nodes,
                                                      pn.provider_id == inv.provider_id))
            .where(inv.provider_id == any_(bindparam("provider_ids", list(provider_ids),
                                                       type_=ARRAY(Text)))))


@cache
def inventory_sql(schema: str | None) -> str:
    """`inventory_statement`'s SQL text with the tables in `schema` (None: unqualified, on the
    search_path), compiled once per schema (compiling costs about as much as running it): the
    candidates go in as the parameter `provider_ids`."""
    return compiled(inventory_statement(()), schema=schema)[0]


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
    vendor, model, RAM (whole GiB) and interface family (`gpu_attributes.matches`), and the
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
