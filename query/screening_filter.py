"""The `BidScreeningFilter`: what the SQL prefilter checks of a request, and its JSON form.

Pure. `screening_filter` reduces a `GroupRequest` to the capacity totals, per-node maxima,
per-unit GPU tokens, per-node GPU counts and storage classes, signedBy and self attributes,
the leased IPs and the reclamation window (DESIGN section 6), refusing totals beyond the read
model's bigints.
`filter_to_json` / `filter_from_json` are the filter's own document (POST /v1/prefilter,
explain=true).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic.alias_generators import to_camel

from hwledger.query.group_request import Attribute, GroupRequest
from hwledger.query.request_fields import (
    MAX_TOTAL,
    InvalidRequest,
    camel_fields,
    count,
    expect_list,
    glob_attributes,
    names,
    reclamation_window,
)


@dataclass(frozen=True)
class UnitScreen:
    """One unit's conditions: some GPU of `gpu_tokens` free, some node with the GPUs of one
    replica free (`gpu_node_tokens`, `tokens.node_token`), every storage class."""

    gpu_tokens: tuple[str, ...] = ()
    storage_classes: tuple[str, ...] = ()
    gpu_node_tokens: tuple[str, ...] = ()


@dataclass(frozen=True)
class BidScreeningFilter:
    """What the SQL prefilter checks (DESIGN section 6); `reclamation_window` in seconds."""

    total_cpu: int = 0
    total_memory: int = 0
    total_gpu: int = 0
    total_ephemeral: int = 0
    total_persistent: int = 0
    max_node_cpu: int = 0
    max_node_memory: int = 0
    max_node_gpu: int = 0
    units: tuple[UnitScreen, ...] = ()
    signed_by_all_of: tuple[str, ...] = ()
    signed_by_any_of: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    total_leased_ip: int = 0
    reclamation_window: int | None = None


def screening_filter(request: GroupRequest) -> BidScreeningFilter:
    """Reduce a request to what the prefilter checks."""
    units = request.units
    built = BidScreeningFilter(
        total_cpu=sum(u.cpu_millicores * u.count for u in units),
        total_memory=sum(u.node_memory_bytes * u.count for u in units),
        total_gpu=sum(u.gpu_units * u.count for u in units),
        total_ephemeral=sum(u.ephemeral_bytes * u.count for u in units),
        total_persistent=sum(v.size_bytes * u.count for u in units for v in u.persistent),
        max_node_cpu=max(u.cpu_millicores for u in units),
        max_node_memory=max(u.node_memory_bytes for u in units),
        max_node_gpu=max(u.gpu_units for u in units),
        units=tuple(UnitScreen(u.gpu_tokens, u.storage_classes, u.gpu_node_tokens) for u in units),
        signed_by_all_of=request.signed_by_all_of,
        signed_by_any_of=request.signed_by_any_of,
        attributes=request.attributes,
        total_leased_ip=request.leased_ips,
        reclamation_window=request.reclamation_window,
    )
    check_totals(built)
    return built


_TOTALS = ("total_cpu", "total_memory", "total_gpu", "total_ephemeral", "total_persistent",
           "max_node_cpu", "max_node_memory", "max_node_gpu", "total_leased_ip")
"""The filter's integer fields, each bounded by MAX_TOTAL."""


def check_totals(built: BidScreeningFilter) -> None:
    for name in _TOTALS:
        if getattr(built, name) > MAX_TOTAL:
            raise InvalidRequest("resources",
                                 f"{to_camel(name)} {getattr(built, name)} is absurdly large")


def filter_to_json(built: BidScreeningFilter) -> dict[str, Any]:
    """The filter as JSON, camelCase as every answer; `filter_from_json` reads it back."""
    return {
        **{to_camel(name): getattr(built, name) for name in _TOTALS},
        "units": [{"gpuTokens": list(u.gpu_tokens), "storageClasses": list(u.storage_classes),
                   "gpuNodeTokens": list(u.gpu_node_tokens)} for u in built.units],
        "signedBy": {"allOf": list(built.signed_by_all_of),
                     "anyOf": list(built.signed_by_any_of)},
        "attributes": [{"key": a.key, "value": a.value} for a in built.attributes],
        "reclamationWindow": built.reclamation_window,
    }


_FIELDS = (*(to_camel(name) for name in _TOTALS), "units", "signedBy", "attributes",
           "reclamationWindow")


def _lowered(tokens: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({t.lower() for t in tokens}))


def filter_from_json(document: Any) -> BidScreeningFilter:
    """Validate a BidScreeningFilter JSON document: the form `filter_to_json` writes, or the
    same fields in snake_case (`total_cpu`, `units[].gpu_tokens`, `signed_by.all_of`)."""
    doc = camel_fields(document, "", _FIELDS)
    units = []
    items, here = doc["units"]
    for index, item in enumerate(expect_list(items, here)):
        unit = camel_fields(item, f"{here}[{index}]",
                            ("gpuTokens", "storageClasses", "gpuNodeTokens"))
        units.append(UnitScreen(_lowered(names(*unit["gpuTokens"])),
                                names(*unit["storageClasses"]),
                                _lowered(names(*unit["gpuNodeTokens"]))))
    signed_by, here = doc["signedBy"]
    signed = camel_fields(signed_by or {}, here, ("allOf", "anyOf"))
    return BidScreeningFilter(
        **{name: count(*doc[to_camel(name)]) for name in _TOTALS},
        units=tuple(units),
        signed_by_all_of=names(*signed["allOf"]),
        signed_by_any_of=names(*signed["anyOf"]),
        attributes=glob_attributes(*doc["attributes"]),
        reclamation_window=reclamation_window(*doc["reclamationWindow"]),
    )
