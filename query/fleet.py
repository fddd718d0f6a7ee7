"""The fleet console's answers (pure): GPU availability and the provider list as JSON.

`/v1/gpus` counts installed and free GPUs per vendor, model, RAM (whole GiB) and interface
family, the bin-packer's notion of a GPU (`gpu_attributes.matches`), and the providers offering
each; `/v1/providers` lists providers with a staleness by the online TTL rule. The SQL is
`repository.gpu_availability_statement` / `provider_list_statement`; these functions turn
their rows into the answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

GPU_KEYS = ("vendor", "model", "ram", "interface")
COUNTS = ("installed", "free", "providers", "providersFree")


@dataclass(frozen=True)
class FleetFilter:
    """The console's optional filters: GPU vendor and model tokens (lowercase), the providers'
    `region` self attribute, and an auditor who signed them."""

    vendor: str | None = None
    model: str | None = None
    region: str | None = None
    auditor: str | None = None


def gpu_availability(rows: Iterable[Sequence[Any]]) -> dict[str, Any]:
    """`{"totals", "gpus"}` from the rows of `gpu_availability_statement`: (grouped, vendor,
    model, ram GiB, interface, installed, free, providers, providers with a free GPU), where
    `grouped` is false on the one totals row (whose sums are null when no GPU matched)."""
    totals = dict.fromkeys(COUNTS, 0)
    gpus = []
    for grouped, vendor, model, ram_gib, interface, *counts in rows:
        figures = dict(zip(COUNTS, (int(c or 0) for c in counts), strict=True))
        if grouped:
            gpus.append({"vendor": vendor, "model": model, "ram": f"{int(ram_gib)}Gi",
                         "interface": interface, **figures})
        else:
            totals = figures
    return {"totals": totals, "gpus": gpus}


def staleness(last_seen_at: datetime | None, now: datetime, ttl: timedelta) -> str:
    """`fresh` (seen within half the TTL), `ageing` (within the TTL: still online) or
    `offline` (longer ago, or never)."""
    if last_seen_at is None or last_seen_at < now - ttl:
        return "offline"
    return "fresh" if last_seen_at >= now - ttl / 2 else "ageing"


RFC3339_SQL = 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'
"""`iso`'s format as a Postgres `to_char` pattern, for the JSON Postgres writes (of a UTC time)."""


def iso(value: datetime | None) -> str | None:
    """A timestamp as every HTTP answer spells it: RFC 3339 in UTC with milliseconds and `Z`
    (`2026-12-03T10:15:00.000Z`, as JavaScript's `toISOString`); None stays None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def provider_list(rows: Sequence[Sequence[Any]], limit: int, now: datetime,
                  ttl: timedelta) -> dict[str, Any]:
    """`{"providers", "truncated"}` from the rows of `provider_list_statement` (at most
    `limit + 1`: one more means the list was cut)."""
    providers = [{
        "owner": provider_id, "hostUri": host_uri, "region": region, "auditedBy": list(auditors),
        "gpuModels": [m for m in models if "/" in m], "freeGpus": int(free_gpus),
        "lastSeenAt": iso(last_seen_at), "staleness": staleness(last_seen_at, now, ttl),
    } for provider_id, host_uri, region, auditors, models, free_gpus, last_seen_at
        in rows[:limit]]
    return {"providers": providers, "truncated": len(rows) > limit}
