"""Checks for event content that fits its Avro schema but cannot be true.

Shared by `hwledger publish --events` (reject the file before publishing) and the projector
(dead-letter the event). Each problem is one readable sentence naming the field.

Besides impossible values, these checks keep out everything PostgreSQL would refuse, so a
record is dead-lettered here instead of failing its batch
(docs/adr/0057-poison-and-lost-logs.md):
- strings: no NUL character; ids (`ID_FIELDS`) at most `MAX_ID_BYTES` of UTF-8, every other
  string at most `MAX_TEXT_BYTES` (both well inside a btree/GIN index entry);
- `occurred_at` inside `EARLIEST` .. `LATEST` (the log's own time bound is the projector's);
- ids that are UUIDs in canonical spelling (lowercase, hyphenated): the one spelling Python
  and PostgreSQL agree on;
- at most `MAX_GPUS` GPUs per snapshot, byte quantities at most `MAX_BYTES`, millicores at
  most `MAX_MILLICORES`; an allocatable of `UNLIMITED` (-1, as in Akash) is unlimited, read
  as `INT64_MAX` (the projector's per-provider sums saturate at it,
  docs/adr/0038-unlimited-allocatable-and-saturated-totals.md);
- leased IPs (a provider's pool, a run's share) at most `MAX_LEASED_IPS`, a reclamation
  window not negative;
- finite run metrics (no NaN or infinity).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from hwledger.schemas.registry import ENVELOPE_FIELDS
from hwledger.seeds import interface_type_ids

GPU_INTERFACES = ("pcie", "sxm")
ID_FIELDS = frozenset({"event_id", "provider_id", "node_id", "run_id", "auditor",
                       "snapshot_event_id", "class", "key", "slot_native_interface",
                       "actual_interface"})
MAX_ID_BYTES = 256
MAX_TEXT_BYTES = 1024
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_GPUS = 256
MAX_BYTES = 2**50
"""1 PiB per node and field: 8,192 such nodes still sum inside a bigint."""
MAX_MILLICORES = 2**31
UNLIMITED = -1
"""An allocatable of -1: the dimension is not limited (Akash's convention)."""
INT64_MAX = 2**63 - 1
"""What an unlimited allocatable is read as, and where the read model's sums saturate."""
MAX_LEASED_IPS = 2**24
"""A /8 of addresses: a provider's pool, or a run's share of it."""
UUID_FIELDS = ("event_id", "snapshot_event_id")
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _negative(prefix: str, record: Mapping[str, Any], names: Iterable[str]) -> list[str]:
    found = []
    for name in names:
        value = record.get(name)
        if value is not None and value < 0:
            found.append(f"{prefix}{name} must not be negative (got {value})")
    return found


def _duplicates(values: list[Any]) -> list[Any]:
    if len(set(values)) == len(values):
        return []
    seen: set[Any] = set()
    dupes = []
    for v in values:
        if v in seen:
            dupes.append(v)
        seen.add(v)
    return dupes


def _too_large(prefix: str, record: Mapping[str, Any], names: Iterable[str],
               limit: int) -> list[str]:
    return [f"{prefix}{name} must be at most {limit} (got {record[name]})" for name in names
            if record.get(name) is not None and record[name] > limit]


def _shown(value: str) -> str:
    """A value for a problem sentence: repr, cut to 60 characters."""
    return repr(value if len(value) <= 60 else value[:57] + "...")


def text_problems(data: Any, path: str = "", skip: frozenset[str] = frozenset()) -> list[str]:
    """Strings PostgreSQL would refuse or cannot index, anywhere in `data` (keys in `skip`
    of the top level are left out)."""
    found: list[str] = []
    if isinstance(data, str):
        name = path.rsplit(".", 1)[-1].split("[", 1)[0]
        limit = MAX_ID_BYTES if name in ID_FIELDS else MAX_TEXT_BYTES
        if "\x00" in data:
            found.append(f"{path} must not contain a NUL character ({_shown(data)})")
        size = len(data.encode("utf-8", "surrogatepass"))
        if size > limit:
            found.append(f"{path} is {size} bytes long; at most {limit} are allowed")
    elif isinstance(data, Mapping):
        for key, value in data.items():
            if key not in skip:
                found += text_problems(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += text_problems(value, f"{path}[{i}]")
    return found


def uuid_problems(data: Mapping[str, Any]) -> list[str]:
    """Ids that are not a UUID in canonical spelling."""
    return [f"{key} {_shown(str(data[key]))} is not a UUID in canonical spelling "
            "(lowercase, hyphenated)" for key in UUID_FIELDS
            if key in data and not CANONICAL_UUID.fullmatch(str(data[key]))]


def _gpu_problems(gpus: list[Mapping[str, Any]]) -> list[str]:
    if len(gpus) > MAX_GPUS:
        return [f"gpus: {len(gpus)} GPUs in one snapshot; at most {MAX_GPUS} are allowed"]
    slots = [g["slot_index"] for g in gpus]
    found = [f"gpus: duplicate slot_index {dupe}" for dupe in _duplicates(slots)]
    known_links = interface_type_ids()
    for g in gpus:
        if _gpu_plausible(g, known_links):
            continue
        where = f"gpus[slot {g['slot_index']}]."
        if g["slot_index"] < 0:
            found.append(f"{where}slot_index must not be negative")
        if g["vram_bytes"] <= 0:
            found.append(f"{where}vram_bytes must be positive (got {g['vram_bytes']})")
        if g["interface"] not in GPU_INTERFACES:
            found.append(
                f"{where}interface must be one of {GPU_INTERFACES} (got {g['interface']!r})")
        for link in ("slot_native_interface", "actual_interface"):
            if g.get(link) is not None and g[link] not in known_links:
                found.append(f"{where}{link} {g[link]!r} is not a known interface_type name")
        found += _negative(where, g, ["power_limit_w"])
        found += _too_large(where, g, ["vram_bytes"], MAX_BYTES)
        found += _too_large(where, g, ["slot_index"], MAX_GPUS * 4)
    return found


def _gpu_plausible(g: Mapping[str, Any], known_links: Mapping[str, int]) -> bool:
    """The fast path of `_gpu_problems`: True when none of its checks can fail for `g`."""
    native, actual = g.get("slot_native_interface"), g.get("actual_interface")
    power = g.get("power_limit_w")
    return (0 <= g["slot_index"] <= MAX_GPUS * 4 and 0 < g["vram_bytes"] <= MAX_BYTES
            and g["interface"] in GPU_INTERFACES
            and (native is None or native in known_links)
            and (actual is None or actual in known_links)
            and (power is None or power >= 0))


def _snapshot_problems(data: Mapping[str, Any]) -> list[str]:
    system = data["system"]
    found = _negative("system.", system, ["ram_bytes", "cpu_base_clock_mhz",
                                          "cpu_peak_clock_mhz", "memory_speed_mhz",
                                          "memory_channels", "bar_size_mb"])
    if system["cpu_cores"] <= 0 or system["cpu_threads"] < system["cpu_cores"]:
        found.append("system: cpu_cores must be positive and cpu_threads >= cpu_cores")
    found += _too_large("system.", system, ["ram_bytes"], MAX_BYTES)
    found += _too_large("system.", system, ["cpu_threads"], MAX_MILLICORES // 1000)
    allocatable = data["allocatable"]
    found += _resource_problems("allocatable.", {
        k: v for k, v in allocatable.items() if v != UNLIMITED})
    for volume in data["storage"]:
        where = f"storage[{_shown(volume['class'])}]."
        found += _negative(where, volume, ["bytes"]) + _too_large(where, volume, ["bytes"],
                                                                  MAX_BYTES)
    found += [f"storage: duplicate class {_shown(c)}"
              for c in _duplicates([v["class"] for v in data["storage"]])]
    return found + _gpu_problems(data["gpus"])


def _resource_problems(prefix: str, resources: Mapping[str, Any]) -> list[str]:
    """Allocatable or requested CPU, memory and ephemeral storage: not negative, bounded."""
    found = _negative(prefix, resources,
                      ["cpu_millicores", "memory_bytes", "ephemeral_storage_bytes"])
    found += _too_large(prefix, resources, ["cpu_millicores"], MAX_MILLICORES)
    return found + _too_large(prefix, resources, ["memory_bytes", "ephemeral_storage_bytes"],
                              MAX_BYTES)


def allocatable_value(value: int) -> int:
    """An allocatable as the read model stores it: `UNLIMITED` is `INT64_MAX`."""
    return INT64_MAX if value == UNLIMITED else value


def _run_started_problems(data: Mapping[str, Any]) -> list[str]:
    resources = data["resources"]
    found = _resource_problems("resources.", resources)
    found += _negative("", data, ["leased_ips"])
    found += _too_large("", data, ["leased_ips"], MAX_LEASED_IPS)
    found += [f"resources.gpu_slots: duplicate slot {s}"
              for s in _duplicates(resources["gpu_slots"])]
    found += [f"resources.gpu_slots: negative slot {s}" for s in resources["gpu_slots"] if s < 0]
    return found


RUN_METRICS = ("wall_clock_seconds", "seconds_to_first_token", "tokens_per_second",
               "peak_vram_bytes", "power_limit_w", "measured_tflops", "gpu_sm_utilization_pct",
               "energy_wh")


def _run_finished_problems(data: Mapping[str, Any]) -> list[str]:
    found = [f"{name} must be a finite number (got {data[name]})" for name in RUN_METRICS
             if isinstance(data.get(name), float) and not math.isfinite(data[name])]
    return found + _negative("", data, RUN_METRICS)


def _attribute_problems(data: Mapping[str, Any]) -> list[str]:
    return [f"attributes: duplicate key {k!r}"
            for k in _duplicates([a["key"] for a in data["attributes"]])]


def _registration_problems(data: Mapping[str, Any]) -> list[str]:
    found = _attribute_problems(data)
    found += _negative("", data, ["leased_ip_capacity", "reclamation_window"])
    return found + _too_large("", data, ["leased_ip_capacity"], MAX_LEASED_IPS)


_CHECKS = {
    "HardwareSnapshotted": _snapshot_problems,
    "NodeHeartbeated": lambda data: [],  # its one content field is a UUID, checked below
    "RunStarted": _run_started_problems,
    "RunFinished": _run_finished_problems,
    "ProviderRegistered": _registration_problems,
    "ProviderAudited": _attribute_problems,
}


def envelope_problems(data: Mapping[str, Any]) -> list[str]:
    """The checks every event shares (its ids, time and producer)."""
    found = [f"{key} must not be empty" for key in ("event_id", "provider_id")
             if not str(data.get(key, "")).strip()]
    at = data.get("occurred_at")
    if isinstance(at, datetime) and not EARLIEST <= at < LATEST:
        found.append(f"occurred_at {at.isoformat()} is outside {EARLIEST.year}..{LATEST.year}")
    envelope = {k: data[k] for k in ENVELOPE_FIELDS if k in data}
    return found + text_problems(envelope) + uuid_problems(envelope)


def content_problems(event_type: str, data: Mapping[str, Any]) -> list[str]:
    """The checks of one event type; they look only at the content (the fields after the
    envelope), so a snapshot's hold for every snapshot with the same content."""
    return (_CHECKS[event_type](data) + text_problems(data, skip=ENVELOPE_FIELDS)
            + uuid_problems({k: v for k, v in data.items() if k not in ENVELOPE_FIELDS}))


def problems(event_type: str, data: Mapping[str, Any]) -> list[str]:
    """Every impossible value in a schema-valid event; empty when the event is plausible."""
    return envelope_problems(data) + content_problems(event_type, data)
