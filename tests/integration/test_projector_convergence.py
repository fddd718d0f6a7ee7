"""Convergence: interleavings that keep per-provider order, with duplicates, give equal tables."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwledger.deploy.bench.fleet import history
from hwledger.projectors.checksums import READ_MODEL_TABLES, table_checksums
from hwledger.projectors.plan import Record
from hwledger.projectors.writer import Writer
from hwledger.schemas import codec
from hwledger.schemas.db import connect
from tests.integration.projector_support import fresh_schema

Message = tuple[str, bytes]


def interleave(messages: Sequence[Message], rng: random.Random, duplicates: int
               ) -> list[Message]:
    """A random merge of the per-provider streams, each re-sending some of its own events."""
    streams: dict[str, list[Message]] = {}
    for key, value in messages:
        streams.setdefault(key, []).append((key, value))
    for stream in streams.values():
        for _ in range(duplicates):
            original = rng.randrange(len(stream))
            stream.insert(rng.randint(original + 1, len(stream)), stream[original])
    merged: list[Message] = []
    cursors = {key: 0 for key in streams}
    while cursors:
        key = rng.choice(sorted(cursors))
        merged.append(streams[key][cursors[key]])
        cursors[key] += 1
        if cursors[key] == len(streams[key]):
            del cursors[key]
    return merged


def project_in_batches(conn: psycopg.Connection[Any], messages: Sequence[Message],
                       rng: random.Random, max_batch: int) -> dict[str, tuple[int, str]]:
    tables = ", ".join((*READ_MODEL_TABLES, "projection_offsets", "dead_letters",
                        "parked_events"))
    conn.execute(f"TRUNCATE {tables} CASCADE")
    conn.commit()
    writer = Writer(conn, timedelta(hours=6))
    offset = 0
    while offset < len(messages):
        size = rng.randint(1, max_batch)
        chunk = messages[offset:offset + size]
        records = [Record("t", 0, offset + i, value) for i, (_, value) in enumerate(chunk)]
        writer.apply(records, {("t", 0): (offset or None, offset + len(chunk))})
        offset += len(chunk)
    return table_checksums(conn)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), providers=st.integers(1, 4),
       events=st.integers(20, 160), shuffle=st.randoms(use_true_random=False),
       duplicates=st.integers(0, 4))
@pytest.mark.slow
def test_interleavings_with_duplicates_converge(database_url: str, seed: int, providers: int,
                                                events: int, shuffle: random.Random,
                                                duplicates: int) -> None:
    messages = [(str(d["provider_id"]), codec.encode(t, d))
                for t, d in history(seed, providers, events, nodes_per_provider=2)]
    with fresh_schema(database_url) as schema, connect(database_url, schema) as conn:
        baseline = project_in_batches(conn, messages, random.Random(0), len(messages))
        for _ in range(2):
            variant = interleave(messages, shuffle, duplicates)
            assert project_in_batches(conn, variant, shuffle, 40) == baseline
        assert baseline["runs"][0] > 0 or events < 40
