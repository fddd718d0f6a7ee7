"""The prefilter's conditions: what a `BidScreeningFilter` asks of `provider_inventory`.

`conditions` lists every condition of a filter (DESIGN section 6) as (kind, parameter name,
value), to be AND'd; `clause` writes one kind as a SQLAlchemy clause over provider_inventory's
columns (or a subquery's), every value a bound parameter. `Shares`, the planner's statistics
read with SHARES_SQL, tell which conditions are so common that `prefilter_sql` checks them
behind its fence instead of through a GIN index. Pure: no connection, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Text,
    bindparam,
    exists,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from hwledger.query.screening_filter import BidScreeningFilter

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
SHARES_SQL = (
    "SELECT g.most_common_elems::text::text[], g.most_common_elem_freqs, "
    "a.most_common_vals::text::jsonb[], a.most_common_freqs, "
    "n.most_common_elems::text::text[], n.most_common_elem_freqs FROM (SELECT) AS one "
    "LEFT JOIN pg_stats g ON g.schemaname = %(schema)s "
    "AND g.tablename = 'provider_inventory' AND g.attname = 'gpu_models_free' "
    "LEFT JOIN pg_stats a ON a.schemaname = %(schema)s "
    "AND a.tablename = 'provider_inventory' AND a.attname = 'self_attributes' "
    "LEFT JOIN pg_stats n ON n.schemaname = %(schema)s "
    "AND n.tablename = 'provider_inventory' AND n.attname = 'gpu_node_tokens_free'")


@dataclass(frozen=True)
class Shares:
    """The share of providers with each GPU token free, each node token, and each self
    attribute, as the planner's statistics (ANALYZE) count them: a token or attribute they do
    not list is taken as rare. Read with SHARES_SQL (see `shares_from`)."""

    gpu_tokens: Mapping[str, float] = field(default_factory=dict)
    attributes: Mapping[tuple[str, str], float] = field(default_factory=dict)
    gpu_node_tokens: Mapping[str, float] = field(default_factory=dict)

    def common_gpu(self, tokens: Sequence[str]) -> bool:
        return _common(self.gpu_tokens, tokens)

    def common_gpu_node(self, tokens: Sequence[str]) -> bool:
        return _common(self.gpu_node_tokens, tokens)

    def common_attribute(self, key: str, value: str) -> bool:
        return self.attributes.get((key, value), 0.0) >= COMMON_SHARE


def _common(shares: Mapping[str, float], tokens: Sequence[str]) -> bool:
    return sum(shares.get(t, 0.0) for t in tokens) >= COMMON_SHARE


NO_SHARES = Shares()
"""No statistics: every GPU token and attribute is taken as rare."""


def shares_from(row: Sequence[Any] | None) -> Shares:
    """`Shares` from the row of SHARES_SQL: the GPU and node tokens' element frequencies, and
    each attribute's share summed over the most common whole `self_attributes` documents (a
    lower bound, exact when they cover the fleet)."""
    if row is None:
        return Shares()
    tokens, token_freqs, documents, document_freqs, node_tokens, node_token_freqs = row
    attributes: dict[tuple[str, str], float] = {}
    for document, freq in zip(documents or (), document_freqs or (), strict=True):
        for key, value in (document.items() if isinstance(document, dict) else ()):
            if isinstance(value, str):
                attributes[(key, value)] = attributes.get((key, value), 0.0) + freq
    # most_common_elem_freqs ends with three more numbers (min, max, null share): zip drops them
    return Shares(dict(zip(tokens or (), token_freqs or (), strict=False)), attributes,
                  dict(zip(node_tokens or (), node_token_freqs or (), strict=False)))


def conditions(screen: BidScreeningFilter, online_since: datetime | None,
               shares: Shares = NO_SHARES, after: str | None = None) -> list[Condition]:
    """Every condition of the prefilter (DESIGN section 6), to be AND'd: its kind, the name of
    its parameter, and the value bound to it. A unit's GPU tokens or node tokens that together
    are free at COMMON_SHARE of the providers or more, and an attribute at least that common
    (per `shares`), are `common_gpu` / `common_gpu_node` / `common_attribute` conditions,
    checked behind the fence (`prefilter_sql`) instead of through a GIN index; so are a unit's
    GPU tokens when it has node tokens, which imply them. `after` (a page's cursor) keeps the
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
            implied = bool(unit.gpu_node_tokens) or shares.common_gpu(unit.gpu_tokens)
            found.append(("common_gpu" if implied else "gpu", f"unit{index}_gpu_tokens",
                          list(unit.gpu_tokens)))
        if unit.gpu_node_tokens:
            found.append(("common_gpu_node" if shares.common_gpu_node(unit.gpu_node_tokens)
                          else "gpu_node", f"unit{index}_gpu_node_tokens",
                          list(unit.gpu_node_tokens)))
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
        # last_seen_at would only add a useless bitmap to the plan (see prefilter_sql)
        return func.coalesce(columns["last_seen_at"],
                             literal_column("'-infinity'::timestamptz")) >= \
            bindparam(name, type_=DateTime(timezone=True))
    if kind in ("gpu", "common_gpu"):
        return columns["gpu_models_free"].bool_op("&&")(_text_array_param(name))
    if kind in ("gpu_node", "common_gpu_node"):
        return columns["gpu_node_tokens_free"].bool_op("&&")(_text_array_param(name))
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
