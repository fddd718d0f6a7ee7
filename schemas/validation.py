"""Checks for event content that fits its Avro schema but cannot be true.

Shared by `hwledger publish --events` (reject the file before publishing) and the projector
(dead-letter the event). Each problem is one readable sentence naming the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hwledger.seeds import interface_type_ids

GPU_INTERFACES = ("pcie", "sxm")


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


def _gpu_problems(gpus: list[Mapping[str, Any]]) -> list[str]:
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
    return found


def _gpu_plausible(g: Mapping[str, Any], known_links: Mapping[str, int]) -> bool:
    """The fast path of `_gpu_problems`: True when none of its checks can fail for `g`."""
    native, actual = g.get("slot_native_interface"), g.get("actual_interface")
    power = g.get("power_limit_w")
    return (g["slot_index"] >= 0 and g["vram_bytes"] > 0 and g["interface"] in GPU_INTERFACES
            and (native is None or native in known_links)
            and (actual is None or actual in known_links)
            and (power is None or power >= 0))


def _snapshot_problems(data: Mapping[str, Any]) -> list[str]:
    system = data["system"]
    found = _negative("system.", system, ["ram_bytes"])
    if system["cpu_cores"] <= 0 or system["cpu_threads"] < system["cpu_cores"]:
        found.append("system: cpu_cores must be positive and cpu_threads >= cpu_cores")
    found += _negative("allocatable.", data["allocatable"],
                       ["cpu_millicores", "memory_bytes", "ephemeral_storage_bytes"])
    for volume in data["storage"]:
        found += _negative(f"storage[{volume['class']}].", volume, ["bytes"])
    found += [f"storage: duplicate class {c!r}"
              for c in _duplicates([v["class"] for v in data["storage"]])]
    return found + _gpu_problems(data["gpus"])



def _run_started_problems(data: Mapping[str, Any]) -> list[str]:
    resources = data["resources"]
    found = _negative("resources.", resources,
                      ["cpu_millicores", "memory_bytes", "ephemeral_storage_bytes"])
    found += [f"resources.gpu_slots: duplicate slot {s}"
              for s in _duplicates(resources["gpu_slots"])]
    found += [f"resources.gpu_slots: negative slot {s}" for s in resources["gpu_slots"] if s < 0]
    return found


def _run_finished_problems(data: Mapping[str, Any]) -> list[str]:
    return _negative("", data, [
        "wall_clock_seconds", "seconds_to_first_token", "tokens_per_second", "peak_vram_bytes",
        "power_limit_w", "measured_tflops", "gpu_sm_utilization_pct", "energy_wh",
    ])


def _attribute_problems(data: Mapping[str, Any]) -> list[str]:
    return [f"attributes: duplicate key {k!r}"
            for k in _duplicates([a["key"] for a in data["attributes"]])]


_CHECKS = {
    "HardwareSnapshotted": _snapshot_problems,
    "RunStarted": _run_started_problems,
    "RunFinished": _run_finished_problems,
    "ProviderRegistered": _attribute_problems,
    "ProviderAudited": _attribute_problems,
}


def envelope_problems(data: Mapping[str, Any]) -> list[str]:
    """The checks every event shares (its ids)."""
    return [f"{key} must not be empty" for key in ("event_id", "provider_id")
            if not str(data.get(key, "")).strip()]


def content_problems(event_type: str, data: Mapping[str, Any]) -> list[str]:
    """The checks of one event type; a snapshot's look only at its content (after the
    envelope), so they hold for every snapshot with the same content."""
    return _CHECKS[event_type](data)


def problems(event_type: str, data: Mapping[str, Any]) -> list[str]:
    """Every impossible value in a schema-valid event; empty when the event is plausible."""
    return envelope_problems(data) + content_problems(event_type, data)
