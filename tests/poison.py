"""Poison records for tests: the listed cases of values PostgreSQL or Python would refuse, and
random mutations of valid events that are certain to be bad.

Every builder returns raw bytes as a producer could publish them; each bad event gets a fresh
event id (unless the id itself is the poison), so none is a duplicate of a valid one.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hwledger.schemas import codec
from hwledger.schemas.events import EventData
from tests import factories as f

YEAR_10000_MS = int((datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp() + 1) * 1000)
HUGE = "x" * 10_000


def fresh(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return data | {"event_id": str(uuid.uuid4())} | changes


def _with(path: tuple[Any, ...], data: dict[str, Any], value: Any) -> dict[str, Any]:
    """A deep copy of `data` with the value at `path` replaced."""
    if not path:
        return value  # type: ignore[no-any-return]
    head, rest = path[0], path[1:]
    if isinstance(data, list):
        copy: Any = list(data)
    else:
        copy = dict(data)
    copy[head] = _with(rest, data[head], value)
    return copy  # type: ignore[no-any-return]


def listed_cases(provider: str) -> list[tuple[str, bytes]]:
    """One record per case of issue 12: timestamps outside datetime's range or the window,
    NUL characters, ids longer than an index entry, UUID spellings PostgreSQL refuses, a
    snapshot with 10,000 GPUs."""
    snap = f.snapshot(provider, "node-1")
    run = f.run_started(snap, "run-1")
    registered = f.provider_registered(provider)
    audited = f.provider_audited(provider, "auditor-1")
    cases: list[tuple[str, str, dict[str, Any]]] = []
    for name, millis in (("2^62 ms", 2**62), ("-2^63 ms", -(2**63)),
                         ("year 10000", YEAR_10000_MS)):
        cases.append((f"occurred_at {name}", "HardwareSnapshotted",
                      fresh(snap, occurred_at=millis)))
    for year in (1970, 2999, 9999):
        cases.append((f"occurred_at year {year}", "HardwareSnapshotted",
                      fresh(snap, occurred_at=datetime(year, 6, 1, tzinfo=UTC))))
    strings: list[tuple[str, str, dict[str, Any], tuple[Any, ...]]] = [
        ("provider_id", "HardwareSnapshotted", snap, ("provider_id",)),
        ("node_id", "HardwareSnapshotted", snap, ("node_id",)),
        ("cpu_model", "HardwareSnapshotted", snap, ("system", "cpu_model")),
        ("storage class", "HardwareSnapshotted", snap, ("storage", 0, "class")),
        ("host_uri", "ProviderRegistered", registered, ("host_uri",)),
        ("attribute key", "ProviderRegistered", registered, ("attributes", 0, "key")),
        ("auditor", "ProviderAudited", audited, ("auditor",)),
        ("run_id", "RunStarted", run, ("run_id",)),
    ]
    for name, kind, data, path in strings:
        cases.append((f"NUL in {name}", kind, fresh(_with(path, data, "bad\x00value"))))
        cases.append((f"10,000-character {name}", kind, fresh(_with(path, data, HUGE))))
    good = str(uuid.uuid4())
    for name, spelling in (("urn:uuid: prefix", f"urn:uuid:{good}"),
                           ("underscore", good.replace("-", "_", 1)),
                           ("leading +", f"+{good}"), ("upper case", good.upper()),
                           ("braces", "{" + good + "}")):
        cases.append((f"event_id with {name}", "HardwareSnapshotted",
                      snap | {"event_id": spelling}))
    cases.append(("10,000 GPUs", "HardwareSnapshotted",
                  fresh(snap, gpus=[f.gpu(i) for i in range(10_000)])))
    return [(name, codec.encode(kind, data)) for name, kind, data in cases]


def _string_paths(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(data, str):
        return [path]
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _string_paths(v, (*path, k))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _string_paths(v, (*path, i))]
    return []


def _number_paths(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(data, bool):
        return []
    if isinstance(data, int | float):
        return [path]
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _number_paths(v, (*path, k))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _number_paths(v, (*path, i))]
    return []


BAD_STRINGS: tuple[Callable[[str], str], ...] = (
    lambda s: s + "\x00", lambda s: "\x00" + s, lambda s: s + "y" * 5000,
    lambda s: s * 1000 + "z" * 10_000,
)


def mutation(rng: random.Random, valid: list[EventData]) -> bytes:
    """One record certain to be bad: random bytes, or a valid event with one string made
    refusable, one number made extremely negative, its time out of range, or its id
    misspelled."""
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randbytes(rng.randint(0, 200))
    event_type, data = rng.choice(valid)
    data = fresh(data)
    if kind == 1:
        path = rng.choice([p for p in _string_paths(data) if p != ("event_id",)])
        data = _with(path, data, rng.choice(BAD_STRINGS)(_at(data, path)))
    elif kind == 2 and _number_paths(data):
        path = rng.choice(_number_paths(data))
        data = _with(path, data, -(2**31) if rng.random() < 0.5 else -2)  # -1: unlimited
    elif kind == 2:
        data["provider_id"] = "\x00"
    elif kind == 3:
        data["occurred_at"] = rng.choice([2**62, -(2**62), YEAR_10000_MS, 0,
                                          rng.randint(4102444800000, 2**52)])
    else:
        good = str(data["event_id"])
        data["event_id"] = rng.choice([f"urn:uuid:{good}", good.upper(), "+" + good,
                                       good.replace("-", ""), good[:-1] + "_"])
    try:
        return codec.encode(event_type, data)
    except codec.EncodeError:  # a value the schema cannot carry: bytes no producer can send
        return rng.randbytes(16)


def _at(data: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        data = data[step]
    return data
