"""What `hwledger bench query` times: its fresh schema of synthetic providers (`bench_schema`),
the statements of the service and of the peer-shaped baseline built as the service builds
them (`Statements`), and one timer per contender (`time_sql`, `server_times`, `time_peer`,
`time_naive`), each returning its answers too so the benchmark can cross-check them.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Integer, MetaData, and_, bindparam, select, true

from hwledger.deploy.bench.exact import write_nodes
from hwledger.deploy.bench.fleet import synthetic_provider
from hwledger.deploy.bench.requests import naive_match
from hwledger.query import prefilter_conditions, prefilter_sql, repository
from hwledger.query.aggregator import parse_group_spec
from hwledger.query.screening_filter import BidScreeningFilter, screening_filter
from hwledger.schemas.db import connect
from hwledger.schemas.migrations import drop_schema, migrate
from hwledger.schemas.tables import provider_inventory

COLUMNS = tuple(c.name for c in provider_inventory.columns)


@dataclass
class Setup:
    database_url: str
    schema: str
    now: datetime


PEER_TABLE = "peer_inventory"
peer_inventory = provider_inventory.to_metadata(MetaData(), name=PEER_TABLE)
"""The peer-shaped baseline's table: provider_inventory's rows and columns, its primary key
and no other index."""


@contextmanager
def bench_schema(database_url: str, providers: int, seed: int) -> Iterator[Setup]:
    """A fresh schema with `providers` synthetic inventory rows, their nodes (`write_nodes`)
    and the peer baseline's copy of the rows, dropped afterwards."""
    schema = f"bench_query_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    rng = random.Random(seed)
    with connect(database_url, None) as conn:
        migrate(conn, schema)
    try:
        with connect(database_url, schema) as conn:
            inventories = []
            with conn.cursor() as cur, cur.copy(
                    f"COPY provider_inventory ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for index in range(providers):
                    row, inventory = synthetic_provider(rng, index, now)
                    inventories.append(inventory)
                    copy.write_row([Jsonb(row[c]) if isinstance(row[c], dict) else row[c]
                                    for c in COLUMNS])
            write_nodes(conn, iter(inventories), now)
            del inventories
            conn.execute(  # the offsets a projector of a 6-partition topic leaves
                "INSERT INTO projection_offsets (projection, topic, partition, next_offset, "
                "last_event_at) SELECT 'read_model', 'hwledger.events', p, %s, %s "
                "FROM generate_series(0, 5) AS p", (providers * 10, now))
            conn.execute(f"CREATE TABLE {PEER_TABLE} (LIKE provider_inventory INCLUDING "
                         f"DEFAULTS INCLUDING CONSTRAINTS)")
            conn.execute(f"INSERT INTO {PEER_TABLE} SELECT * FROM provider_inventory")
            conn.execute(f"ALTER TABLE {PEER_TABLE} ADD PRIMARY KEY (provider_id)")
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
        yield Setup(database_url, schema, now)
    finally:
        drop_schema(database_url, schema)


@dataclass(frozen=True)
class Statements:
    """Builds the service's statements as the service does: on `schema`, with its statistics'
    shares and the online TTL."""

    schema: str
    shares: prefilter_conditions.Shares
    online_since: datetime

    @classmethod
    def read(cls, conn: psycopg.Connection[Any], schema: str, online_since: datetime
             ) -> Statements:
        row = conn.execute(prefilter_conditions.SHARES_SQL, {"schema": schema}).fetchone()
        return cls(schema, prefilter_conditions.shares_from(row), online_since)

    def prefilter(self, screen: BidScreeningFilter, limit: int | None, ordered: bool = False
                  ) -> prefilter_sql.Prefilter:
        return prefilter_sql.prefilter(screen, self.online_since, limit, self.shares,
                                    ordered=ordered)

    def answer(self, screen: BidScreeningFilter, probe: int | None, ordered: bool = False
               ) -> tuple[str, dict[str, Any]]:
        return self.prefilter(screen, probe, ordered).answer_sql(self.schema)

    def peer(self, screen: BidScreeningFilter, limit: int, ordered: bool
             ) -> tuple[str, dict[str, Any]]:
        """The peer-shaped baseline: the prefilter's WHERE clauses as one plain statement over
        `peer_inventory` (no GIN index, no fence, no statistics-driven choices), the first
        `limit` providers (by owner when `ordered`, as a paged answer) with the columns the
        answer shows."""
        query = prefilter_sql.prefilter(screen, self.online_since, limit)
        p = peer_inventory.c
        columns = {c.name: c for c in p}
        statement = (select(p.provider_id, p.host_uri, p.audited_by, p.gpu_models,
                            p.last_seen_at)
                     .where(and_(true(), *(prefilter_conditions.clause(kind, name, columns)
                                           for kind, name in query.shape)))
                     .limit(bindparam("limit", type_=Integer)))
        if ordered:
            statement = statement.order_by(peer_inventory.c.provider_id)
        sql, params = repository.compiled(statement, query.params, schema=self.schema)
        return sql, prefilter_sql.driver_params(params)


def time_sql(conn: psycopg.Connection[Any], statements: Statements,
             screens: Sequence[BidScreeningFilter], probe: int | None, ordered: bool = False
             ) -> tuple[list[float], list[set[str]]]:
    """Per-request seconds of the service's one statement (projection position + candidates as
    JSON, `probe` = the service's limit + 1 or None for no limit, by owner when `ordered` as a
    paged answer; execute + fetch, prepared as the service prepares it) and its answers."""
    seconds, answers = [], []
    for screen in screens:
        query = statements.prefilter(screen, probe, ordered)
        sql, params = query.answer_sql(statements.schema)
        started = time.perf_counter()
        row = conn.execute(sql, params, prepare=query.prepare).fetchone()
        seconds.append(time.perf_counter() - started)
        answers.append({p["owner"] for p in json.loads(row[3])} if row else set())
    return seconds, answers


def server_times(conn: psycopg.Connection[Any], statements: Statements,
                 screens: Sequence[BidScreeningFilter], probe: int) -> list[float]:
    """Per-request planning + execution seconds as Postgres itself reports them (EXPLAIN
    ANALYZE): the statement's cost without client-side scheduling noise."""
    seconds = []
    for screen in screens:
        sql, params = statements.answer(screen, probe)
        row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchone()
        plan = row[0][0] if row else {}
        seconds.append((plan.get("Planning Time", 0) + plan.get("Execution Time", 0)) / 1000)
    return seconds


def time_peer(conn: psycopg.Connection[Any], statements: Statements,
              screens: Sequence[BidScreeningFilter], limit: int, ordered: bool
              ) -> tuple[list[float], list[set[str]]]:
    """Per-request seconds of the peer-shaped baseline (execute + fetch) and its answers, on a
    connection with the default session settings."""
    seconds, answers = [], []
    for screen in screens:
        sql, params = statements.peer(screen, limit, ordered)
        started = time.perf_counter()
        rows = conn.execute(sql, params).fetchall()
        seconds.append(time.perf_counter() - started)
        answers.append({r[0] for r in rows})
    return seconds, answers


def time_naive(conn: psycopg.Connection[Any], screens: Sequence[BidScreeningFilter],
               online_since: datetime) -> tuple[list[float], list[set[str]]]:
    """Per-request seconds of load-everything-then-filter, and its answers."""
    seconds, answers = [], []
    for screen in screens:
        started = time.perf_counter()
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            rows = cur.execute("SELECT * FROM provider_inventory").fetchall()
        answers.append({r["provider_id"] for r in rows if naive_match(r, screen, online_since)})
        seconds.append(time.perf_counter() - started)
    return seconds, answers


def explain_selective(conn: psycopg.Connection[Any], statements: Statements) -> str:
    """EXPLAIN of a request for a rare GPU model."""
    screen = screening_filter(parse_group_spec({"resources": [{"count": 1, "resource": {
        "cpu": {"units": {"val": "8000"}}, "gpu": {"units": {"val": "8"}, "attributes": [
            {"key": "vendor/nvidia/model/b200", "value": "true"}]}}}]}))
    query = statements.prefilter(screen, 1000)
    sql, params = repository.compiled(query.statement, query.params)
    rows = conn.execute("EXPLAIN " + sql, prefilter_sql.driver_params(params)).fetchall()
    return "\n".join(str(r[0]) for r in rows)
