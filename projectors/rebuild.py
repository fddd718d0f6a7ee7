"""Rebuild: replay the whole log into a fresh versioned schema, then switch readers to it.

`hwledger rebuild` creates `hwledger_v<N>` (migrated and seeded) and projects the topic from
offset 0 into it with its own offsets (the live schema is never touched), using big batches so
the writer's COPY path carries the insert-only tables. Two phases:

1. `replay`: the log as it is, by `workers` processes with a fixed share of the partitions each
   (no consumer group to form or rebalance), each until its partitions are at their end;
2. `Rebuilder` (with a switch): a consumer-group projector that projects what arrived since
   and, after every batch, tries the switch: in ONE transaction that locks
   `hwledger_meta.active_schema`, if the new schema's offsets have reached the live schema's
   offsets on every partition, the pointer moves to the new schema. Query services read the
   pointer per request, so queries in flight finish on the old schema and the next ones use
   the new one: no error, no restart. With `keep_projecting` it goes on as a live projector
   until it is stopped or another projector writes the same offsets (the compare-and-set
   fence) and takes over: the hand-over of docs/operations.md.

No reader looks at the new schema before the switch, so its `provider_inventory` is deferred
(`hwledger_meta.deferred_inventory`): batches only record each provider's last event time, and
the switch transaction computes every provider's row once before moving the pointer (a replay
without a switch does it when it ends). This takes the per-batch recompute, the largest cost
of the live projector in Postgres, off the replay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import sql

from hwledger.projectors.config import ProjectorConfig
from hwledger.projectors.inventory_sql import build_deferred_inventory
from hwledger.projectors.offsets import PROJECTION
from hwledger.projectors.plan import Record
from hwledger.projectors.replicas import start_replicas, stop_replicas, topic_partitions
from hwledger.projectors.service import Projector
from hwledger.schemas.db import connect
from hwledger.schemas.migrations import (
    SCHEMA_PREFIX,
    VERSIONED_SCHEMA,
    active_schema,
    ensure_meta,
    hwledger_schemas,
    prepare_schema,
)
from hwledger.schemas.roles import grant_read
from hwledger.schemas.signatures import AuditorKeys

log = logging.getLogger("hwledger.rebuild")


def next_schema(existing: Iterable[str]) -> str:
    """The next free `hwledger_v<N>` name given the schemas that exist."""
    versions = [int(m[1]) for name in existing if (m := VERSIONED_SCHEMA.match(name))]
    return f"{SCHEMA_PREFIX}{max(versions, default=0) + 1}"


def reached(new: Mapping[int, int], live: Mapping[int, int]) -> bool:
    """True when the new schema is at or past the live schema on every live partition."""
    return all(new.get(partition, 0) >= offset for partition, offset in live.items())


READ_GRANTEES = """
SELECT DISTINCT r.rolname FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a
JOIN pg_roles r ON r.oid = a.grantee
WHERE n.nspname = %s AND a.privilege_type = 'USAGE' AND a.grantee <> n.nspowner ORDER BY 1
"""


def copy_read_grants(conn: psycopg.Connection[Any], source: str, target: str) -> list[str]:
    """Give every role with USAGE on `source` (the query service's read-only role, say)
    USAGE on `target` and SELECT on its tables, so a switch to `target` cuts no reader off;
    returns those roles."""
    roles = [str(r[0]) for r in conn.execute(READ_GRANTEES, (source,)).fetchall()]
    for role in roles:
        grant_read(conn, target, role)
    return roles


def create_versioned_schema(database_url: str, name: str | None = None) -> str:
    """Create, migrate and seed a fresh schema with its inventory deferred and the active
    schema's read grants; returns its name."""
    with connect(database_url, None) as conn:
        schema = name or next_schema(hwledger_schemas(conn))
    prepare_schema(database_url, schema)
    with connect(database_url, None) as conn:
        ensure_meta(conn)
        copy_read_grants(conn, active_schema(conn), schema)
        conn.execute("INSERT INTO hwledger_meta.deferred_inventory (schema_name) VALUES (%s) "
                     "ON CONFLICT DO NOTHING", (schema,))
        conn.commit()
    return schema


def finish_inventory(database_url: str, schema: str) -> None:
    """Build the deferred provider_inventory of `schema` (no-op once built)."""
    with connect(database_url, schema) as conn, conn.transaction():
        build_deferred_inventory(conn)


def stored_offsets(conn: psycopg.Connection[Any], schema: str, topic: str) -> dict[int, int]:
    """partition -> next offset of the read-model projection in `schema`."""
    rows = conn.execute(
        sql.SQL("SELECT partition, next_offset FROM {}.projection_offsets "
                        "WHERE projection = %s AND topic = %s")
        .format(sql.Identifier(schema)), (PROJECTION, topic)).fetchall()
    return {int(p): int(o) for p, o in rows}


def try_switch(conn: psycopg.Connection[Any], new_schema: str, topic: str) -> bool:
    """Atomically point readers at `new_schema` if it has caught up with the active one."""
    with conn.transaction():
        ensure_meta(conn)
        row = conn.execute("SELECT schema_name FROM hwledger_meta.active_schema "
                           "FOR UPDATE").fetchone()
        live = str(row[0]) if row else active_schema(conn)
        if live == new_schema:
            return True
        exists = conn.execute("SELECT to_regclass(%s)",
                              (f"{live}.projection_offsets",)).fetchone()
        live_offsets = stored_offsets(conn, live, topic) if exists and exists[0] else {}
        if not reached(stored_offsets(conn, new_schema, topic), live_offsets):
            return False
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(new_schema)))
        build_deferred_inventory(conn)
        conn.execute("UPDATE hwledger_meta.active_schema SET schema_name = %s, "
                     "switched_at = now()", (new_schema,))
    return True


@dataclass
class RebuildProgress:
    """What the rebuild has done so far (fed to the progress bar and the final report)."""

    schema: str
    previous: str
    events: int = 0
    switched: bool = False
    listeners: list[Callable[[RebuildProgress], None]] = field(default_factory=list)


class Reporter:
    """Counts the events the new schema holds (its stored offsets, whichever process wrote
    them) and tells the listeners; owns the rebuild's connection outside the new schema."""

    def __init__(self, database_url: str, progress: RebuildProgress, topic: str) -> None:
        self.meta = connect(database_url, None, autocommit=True)
        self.progress = progress
        self.topic = topic

    def __call__(self) -> None:
        self.progress.events = sum(stored_offsets(self.meta, self.progress.schema,
                                                  self.topic).values())
        for listener in self.progress.listeners:
            listener(self.progress)


class ReportingProjector(Projector):
    """A projector that reports the rebuild's progress after every batch."""

    def __init__(self, config: ProjectorConfig, report: Reporter) -> None:
        super().__init__(config)
        self.report = report

    def _apply(self, records: list[Record]) -> None:
        super()._apply(records)
        self.report()


class Rebuilder(ReportingProjector):
    """The consumer-group projector into the new schema that switches readers once it has
    caught up with the live schema (and, with `keep_projecting`, goes on as a live one)."""

    def __init__(self, config: ProjectorConfig, report: Reporter, *, switch: bool,
                 keep_projecting: bool) -> None:
        super().__init__(config, report)
        self.switch = switch
        self.keep_projecting = keep_projecting

    def _apply(self, records: list[Record]) -> None:
        super()._apply(records)
        self._maybe_switch()

    def _maybe_switch(self) -> None:
        progress = self.report.progress
        if self.switch and not progress.switched and self.positions:
            progress.switched = try_switch(self.report.meta, progress.schema,
                                           self.config.topic)

    def _done(self, idle_since: float) -> bool:
        if self._caught_up():
            self._maybe_switch()
            return (self.report.progress.switched or not self.switch) \
                and not self.keep_projecting
        return super()._done(idle_since)


def replay(config: ProjectorConfig, workers: int, report: Reporter) -> None:
    """Project every partition from its stored offset to the end of the log: `workers`
    processes (this one and helpers) with a fixed share of the partitions each, so there is
    no consumer group to form and no rebalance when one finishes. A helper that fails leaves
    its share to this process."""
    partitions = topic_partitions(config)
    shares = [tuple(partitions[i::workers]) for i in range(max(1, workers))]
    helpers = start_replicas([replace(config, partitions=share) for share in shares[1:]
                              if share])
    try:
        ReportingProjector(replace(config, partitions=shares[0]), report).run()
        for helper in helpers:
            while helper.is_alive():
                helper.join(0.5)
                report()
    except BaseException:
        stop_replicas(helpers)
        raise
    failed = stop_replicas(helpers, terminate=False)
    if failed:
        log.warning("a rebuild helper exited with %d; replaying its partitions here", failed)
        ReportingProjector(replace(config, partitions=tuple(partitions)), report).run()


def rebuild(database_url: str, topic: str, kafka: dict[str, Any], *, switch: bool = True,
            keep_projecting: bool = False, batch_size: int = 20_000, workers: int = 1,
            listener: Callable[[RebuildProgress], None] | None = None,
            schema: str | None = None, auditor_keys: AuditorKeys | None = None
            ) -> RebuildProgress:
    """Replay `topic` into a new schema and (with `switch`) point readers at it once caught up.

    First `replay` projects the log as it is, with `workers` processes. Without `switch` that
    is all (a scratch replay for `hwledger verify`); with it, a consumer-group projector
    (`Rebuilder`) projects what arrived meanwhile and switches readers once it has caught up
    with the live schema; with `keep_projecting` it goes on as a live projector.
    `auditor_keys` verify audits as the live projector does (with the keys configured now).
    """
    with connect(database_url, None) as conn:
        ensure_meta(conn)
        conn.commit()
        previous = active_schema(conn)
    new_schema = create_versioned_schema(database_url, schema)
    progress = RebuildProgress(new_schema, previous, listeners=[listener] if listener else [])
    config = ProjectorConfig(
        database_url=database_url, schema=new_schema, topic=topic,
        kafka={"session.timeout.ms": 6000, **kafka}, group_id=f"hwledger-rebuild-{new_schema}",
        batch_size=batch_size, batch_seconds=1.0, exit_when_caught_up=True,
        defer_inventory=True, auditor_keys=auditor_keys)
    report = Reporter(database_url, progress, topic)
    try:
        replay(config, workers, report)
        if switch or keep_projecting:
            Rebuilder(replace(config, exit_when_caught_up=False), report, switch=switch,
                      keep_projecting=keep_projecting).run()
        finish_inventory(database_url, new_schema)
        report()
    finally:
        report.meta.close()
    return progress


def drop_old(database_url: str) -> list[str]:
    """Drop every hwledger read-model schema except the active one; returns the dropped."""
    with connect(database_url, None) as conn:
        ensure_meta(conn)
        keep = active_schema(conn)
        dropped = [s for s in hwledger_schemas(conn) if s != keep]
        for schema in dropped:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(
                sql.Identifier(schema)))
        conn.execute("DELETE FROM hwledger_meta.deferred_inventory "
                     "WHERE schema_name = ANY(%s)", (dropped,))
        conn.commit()
    return dropped
