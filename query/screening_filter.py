"""The `BidScreeningFilter`: what the SQL prefilter checks of a request, and its JSON form.

Pure. `screening_filter` reduces a `GroupRequest` to the capacity totals, per-node maxima,
per-unit GPU tokens and storage classes, signedBy and self attributes, the leased IPs and the
reclamation window (DESIGN section 6), refusing totals beyond the read model's bigints.
`filter_to_json` / `filter_from_json` are the filter's own document (POST /v1/prefilter,
explain=true).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hwledger.query.group_request import Attribute, GroupRequest
from hwledger.query.request_fields import (
    MAX_TOTAL,
    InvalidRequest,
    count,
    expect_list,
    expect_object,
    glob_attributes,
    names,
    reclamation_window,
)


@dataclass(frozen=True)
class UnitScreen:
    gpu_tokens: tuple[str, ...] = ()
    storage_classes: tuple[str, ...] = ()


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
        units=tuple(UnitScreen(u.gpu_tokens, u.storage_classes) for u in units),
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


def check_totals(built: BidScreeningFilter) -> None:
    for name in _TOTALS:
        if getattr(built, name) > MAX_TOTAL:
            raise InvalidRequest("resources", f"{name} {getattr(built, name)} is absurdly large")


def filter_to_json(built: BidScreeningFilter) -> dict[str, Any]:
    """The filter as JSON; `filter_from_json` reads it back."""
    return {
        **{name: getattr(built, name) for name in _TOTALS},
        "units": [{"gpu_tokens": list(u.gpu_tokens), "storage_classes": list(u.storage_classes)}
                  for u in built.units],
        "signed_by": {"all_of": list(built.signed_by_all_of),
                      "any_of": list(built.signed_by_any_of)},
        "attributes": [{"key": a.key, "value": a.value} for a in built.attributes],
        "reclamation_window": built.reclamation_window,
    }


def filter_from_json(document: Any) -> BidScreeningFilter:
    """Validate a BidScreeningFilter JSON document (the form `filter_to_json` writes)."""
    doc = expect_object(document, "body")
    known = {*_TOTALS, "units", "signed_by", "attributes", "reclamation_window"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise InvalidRequest(unknown[0], "unknown field")
    units = []
    for index, item in enumerate(expect_list(doc.get("units"), "units")):
        here = f"units[{index}]"
        unit = expect_object(item, here)
        tokens = tuple(sorted({t.lower() for t in names(unit.get("gpu_tokens"),
                                                        f"{here}.gpu_tokens")}))
        units.append(UnitScreen(tokens, names(unit.get("storage_classes"),
                                              f"{here}.storage_classes")))
    signed = expect_object(doc.get("signed_by") or {}, "signed_by")
    attributes = glob_attributes(doc.get("attributes"), "attributes")
    return BidScreeningFilter(
        **{name: count(doc.get(name), name) for name in _TOTALS},
        units=tuple(units),
        signed_by_all_of=names(signed.get("all_of"), "signed_by.all_of"),
        signed_by_any_of=names(signed.get("any_of"), "signed_by.any_of"),
        attributes=attributes,
        reclamation_window=reclamation_window(doc.get("reclamation_window"),
                                              "reclamation_window"),
    )
