"""The pure projection over events built by tests/factories.py: no broker, no database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hwledger.projectors.plan import Decoded, Plan, Record, State, decode_all
from hwledger.projectors.projection import project
from hwledger.schemas import codec

TTL = timedelta(hours=1)


def batch(*events: tuple[str, dict[str, Any]]) -> list[Decoded]:
    """The events as one decoded batch of partition 0, offsets from 0."""
    return decode_all(Record("t", 0, i, codec.encode(t, d)) for i, (t, d) in enumerate(events))


def run(*events: tuple[str, dict[str, Any]], state: State | None = None) -> tuple[Plan, State]:
    """The plan of projecting the events as one batch onto `state` (a fresh one by default)."""
    state = state or State()
    return project(batch(*events), state, TTL), state
