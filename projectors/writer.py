"""The Postgres side of the projector: load the state a batch needs, apply its Plan atomically.

One `Writer.apply` call is ONE transaction holding, in this order: the offset fence (a
compare-and-set on `projection_offsets` for every partition in the batch), every row change of
the batch, dead letters, parked events, and the recomputed `provider_inventory` rows of the
providers the batch touched (while a rebuild defers the inventory, only their last event time:
`build_deferred_inventory` computes every row once before readers switch). An instance that
lost a partition finds the stored offset moved and raises `Fenced`, writing nothing.
Statements are bulk: COPY for append-only tables of already-deduplicated rows, one `unnest`
INSERT ... ON CONFLICT per upserted table, with arrays sent in binary.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from hwledger.projectors.batch import latest_event_times, references
from hwledger.projectors.plan import (
    Decoded,
    KnownRun,
    KnownSnapshot,
    Pending,
    Plan,
    Record,
    State,
    decode,
    decode_all,
)
from hwledger.projectors.projection import project
from hwledger.projectors.rows import (
    MERGE_ORDER,
    AppliedEvent,
    GpuHardware,
    HardwareSnapshot,
    Provider,
    ProviderAudit,
    Run,
    RunGpuUsage,
    RunHardwareMetrics,
    SystemGpuLink,
    SystemHardware,
    SystemSoftware,
    merge_key,
)
from hwledger.schemas import tables, validation
from hwledger.schemas.signatures import AuditorKeys

PROJECTION = "read_model"
KNOWN_IDS_LIMIT = 200_000

Fence = Mapping[tuple[str, int], tuple[int | None, int]]
"""(topic, partition) -> (stored next_offset the batch started from, next_offset after it)."""


class Fenced(Exception):
    """The stored offset of a partition is no longer the one this batch started from."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str


Row = tuple[Any, ...]


def _cols(table: str, names: Sequence[str] | None = None) -> tuple[Column, ...]:
    """The columns the writer inserts into `table`, in the order of `names` (a row type's
    fields; by default the table's own order), typed from the one table metadata."""
    found = tables.metadata.tables[table]
    if names is None:
        names = [c.name for c in tables.inserted_columns(found)]
    return tuple(Column(name, tables.sql_type(found.c[name])) for name in names)


GPU_HARDWARE = _cols("gpu_hardware", GpuHardware._fields)
SYSTEM_HARDWARE = _cols("system_hardware", SystemHardware._fields)
SYSTEM_GPU_LINK = _cols("system_gpu_link", SystemGpuLink._fields)
SYSTEM_SOFTWARE = _cols("system_software", SystemSoftware._fields)
SNAPSHOTS = _cols("hardware_snapshots", HardwareSnapshot._fields)
NODES = _cols("nodes")
RUNS = _cols("runs", Run._fields)
RUN_GPU_USAGE = _cols("run_gpu_usage", RunGpuUsage._fields)
RUN_METRICS = _cols("run_hardware_metrics", RunHardwareMetrics._fields)
PROVIDERS = _cols("providers", Provider._fields)
AUDITS = _cols("provider_audits", ProviderAudit._fields)
APPLIED = _cols("applied_events", AppliedEvent._fields)
DEAD_LETTERS = _cols("dead_letters")
PARKED = _cols("parked_events")


def _merge_value(table: str, name: str, side: str) -> str:
    """One merge column of `side` (`excluded` or the table) as MERGE_ORDER compares it."""
    column = tables.metadata.tables[table].c[name]
    value = f"{side}.{name}"
    if tables.sql_type(column) != "text":
        return value
    return (f"coalesce({value}, '')" if column.nullable else value) + ' COLLATE "C"'


def merge_upsert(table: str) -> str:
    """ON CONFLICT tail of a content-addressed table with `MERGE_ORDER` columns: the stored row
    is replaced only by one whose merge columns are less (C collation, as Python compares)."""
    columns = tables.inserted_columns(tables.metadata.tables[table])

    def merged(side: str) -> str:
        return "(" + ", ".join(_merge_value(table, n, side) for n in MERGE_ORDER[table]) + ")"

    updates = ", ".join(f"{c.name} = excluded.{c.name}" for c in columns[1:])
    return (f"ON CONFLICT ({columns[0].name}) DO UPDATE SET {updates} "
            f"WHERE {merged('excluded')} < {merged(table)}")


NEWER = "(excluded.{at}, excluded.event_id) > ({t}.{at}, {t}.event_id)"
UPSERTS = {
    "gpu_hardware": merge_upsert("gpu_hardware"),
    "system_hardware": merge_upsert("system_hardware"),
    "nodes": """ON CONFLICT (provider_id, node_id) DO UPDATE SET
        current_snapshot_event_id = CASE WHEN (excluded.current_occurred_at,
            excluded.current_snapshot_event_id) > (nodes.current_occurred_at,
            nodes.current_snapshot_event_id) THEN excluded.current_snapshot_event_id
            ELSE nodes.current_snapshot_event_id END,
        current_occurred_at = greatest(nodes.current_occurred_at, excluded.current_occurred_at),
        first_seen_at = least(nodes.first_seen_at, excluded.first_seen_at),
        last_seen_at = greatest(nodes.last_seen_at, excluded.last_seen_at)""",
    "providers": "ON CONFLICT (provider_id) DO UPDATE SET host_uri = excluded.host_uri, "
                 "attributes = excluded.attributes, registered_at = excluded.registered_at, "
                 "event_id = excluded.event_id, "
                 "leased_ip_capacity = excluded.leased_ip_capacity, "
                 "reclamation_window = excluded.reclamation_window WHERE "
                 + NEWER.format(at="registered_at", t="providers"),
    "provider_audits": "ON CONFLICT (provider_id, auditor) DO UPDATE SET "
                       "attributes = excluded.attributes, audited_at = excluded.audited_at, "
                       "event_id = excluded.event_id WHERE "
                       + NEWER.format(at="audited_at", t="provider_audits"),
}

def changed_rows_upsert(alias: str, key: str, updates: Mapping[str, str]) -> str:
    """ON CONFLICT tail that sets `updates` (column -> new value) only where a value changes:
    an unchanged row is not rewritten (no dead tuple, no WAL, no index entries)."""
    assignments = ", ".join(f"{name} = {value}" for name, value in updates.items())
    old = ", ".join(f"{alias}.{name}" for name in updates)
    return (f"ON CONFLICT ({key}) DO UPDATE SET {assignments} "
            f"WHERE ({old}) IS DISTINCT FROM ({', '.join(updates.values())})")


_KEPT = {"last_seen_at": "greatest(i.last_seen_at, excluded.last_seen_at)",
         "created_at": "least(i.created_at, excluded.created_at)"}
_INVENTORY_UPDATES = {c.name: _KEPT.get(c.name, f"excluded.{c.name}")
                      for c in tables.provider_inventory.columns if not c.primary_key}
"""provider_inventory's new values on conflict: the recomputed row, last_seen_at never back,
created_at never forward."""

LOCATION = "location-region"
ORGANIZATION = "organization"
"""The attribute keys of the answer's `location` and `organization` (Akash's names): the
signed value of the first auditor in `audited_by` order that signed the key, else the
provider's own."""
SATURATED = validation.INT64_MAX
"""Where a per-provider sum stops: unlimited allocatables (INT64_MAX each) add up past a
bigint, and a total at INT64_MAX still passes every request total the query accepts."""
TOUCHED = """touched AS (
    SELECT * FROM unnest(%(providers)s::text[], %(seen)s::timestamptz[],
                         %(first)s::timestamptz[]) AS t(provider_id, seen, first)
)"""
"""The providers of a batch with their newest and oldest own fact in it."""

INVENTORY = f"""
WITH {TOUCHED}, node_models AS (
    SELECT g.provider_id, g.node_id, g.vendor, g.model, count(*) FILTER (WHERE g.free) AS free
    FROM node_gpus g JOIN touched t USING (provider_id)
    GROUP BY g.provider_id, g.node_id, g.vendor, g.model
), free_gpus AS (
    SELECT provider_id, node_id, sum(free)::bigint AS gpu
    FROM node_models GROUP BY provider_id, node_id
), totals AS (
    SELECT f.provider_id, count(*) AS node_count, least(sum(f.cpu), {SATURATED}) AS cpu,
           least(sum(f.memory), {SATURATED}) AS memory, sum(coalesce(g.gpu, 0)) AS gpu,
           least(sum(f.ephemeral), {SATURATED}) AS ephemeral,
           least(sum(f.persistent), {SATURATED}) AS persistent, max(f.cpu) AS max_cpu,
           max(f.memory) AS max_memory,
           max(coalesce(g.gpu, 0)) AS max_gpu
    FROM node_free f JOIN touched t USING (provider_id)
    LEFT JOIN free_gpus g USING (provider_id, node_id)
    GROUP BY f.provider_id
), models AS (
    SELECT provider_id, vendor, model, bool_or(free > 0) AS free
    FROM node_models GROUP BY provider_id, vendor, model
), tokens AS (
    SELECT m.provider_id, array_agg(DISTINCT v.token ORDER BY v.token) AS installed,
           array_agg(DISTINCT v.token ORDER BY v.token) FILTER (WHERE m.free) AS free
    FROM models m CROSS JOIN LATERAL (VALUES (lower(m.vendor)),
                                             (lower(m.vendor || '/' || m.model))) AS v(token)
    GROUP BY m.provider_id
), classes AS (
    SELECT f.provider_id, array_agg(DISTINCT v ->> 'class' ORDER BY v ->> 'class') AS classes
    FROM node_free f JOIN touched t USING (provider_id)
    CROSS JOIN LATERAL jsonb_array_elements(f.storage) v GROUP BY f.provider_id
), signed AS (
    SELECT a.provider_id, jsonb_object_agg(a.auditor, a.attributes) AS attributes,
           array_agg(a.auditor ORDER BY a.auditor) AS auditors,
           (array_agg(a.attributes ->> '{LOCATION}' ORDER BY a.auditor)
                FILTER (WHERE a.attributes ? '{LOCATION}'))[1] AS location,
           (array_agg(a.attributes ->> '{ORGANIZATION}' ORDER BY a.auditor)
                FILTER (WHERE a.attributes ? '{ORGANIZATION}'))[1] AS organization
    FROM provider_audits a JOIN touched t USING (provider_id)
    WHERE a.attributes <> '{{}}'::jsonb GROUP BY a.provider_id
), held_ips AS (
    SELECT r.provider_id, sum(r.leased_ips) AS ips
    FROM runs r JOIN touched t USING (provider_id)
    WHERE r.finished_event_id IS NULL GROUP BY r.provider_id
)
INSERT INTO provider_inventory AS i (
    provider_id, host_uri, last_seen_at, node_count, total_available_cpu,
    total_available_memory, total_available_gpu, total_available_ephemeral,
    total_available_persistent, max_node_free_cpu, max_node_free_memory, max_node_free_gpu,
    gpu_models, gpu_models_free, storage_classes, self_attributes, signed_attributes, audited_by,
    total_available_leased_ip, reclamation_window, created_at, location, organization)
SELECT t.provider_id, p.host_uri, t.seen, coalesce(x.node_count, 0),
       coalesce(x.cpu, 0)::bigint, coalesce(x.memory, 0)::bigint, coalesce(x.gpu, 0)::int,
       coalesce(x.ephemeral, 0)::bigint, coalesce(x.persistent, 0)::bigint,
       coalesce(x.max_cpu, 0)::bigint, coalesce(x.max_memory, 0)::bigint,
       coalesce(x.max_gpu, 0)::int, coalesce(k.installed, '{{}}'), coalesce(k.free, '{{}}'),
       coalesce(s.classes, '{{}}'), coalesce(p.attributes, '{{}}'),
       coalesce(a.attributes, '{{}}'),
       coalesce(a.auditors, '{{}}'),
       (p.leased_ip_capacity - least(p.leased_ip_capacity, coalesce(h.ips, 0)))::bigint,
       p.reclamation_window,
       t.first, coalesce(a.location, p.attributes ->> '{LOCATION}'),
       coalesce(a.organization, p.attributes ->> '{ORGANIZATION}')
FROM touched t LEFT JOIN totals x USING (provider_id) LEFT JOIN tokens k USING (provider_id)
LEFT JOIN classes s USING (provider_id) LEFT JOIN signed a USING (provider_id)
LEFT JOIN providers p USING (provider_id) LEFT JOIN held_ips h USING (provider_id)
""" + changed_rows_upsert("i", "provider_id", _INVENTORY_UPDATES)


TOUCH_INVENTORY = f"""
WITH {TOUCHED}
INSERT INTO provider_inventory AS i (provider_id, last_seen_at, created_at)
SELECT provider_id, seen, first FROM touched
ON CONFLICT (provider_id) DO UPDATE SET
    last_seen_at = greatest(i.last_seen_at, excluded.last_seen_at),
    created_at = least(i.created_at, excluded.created_at)
WHERE (i.last_seen_at, i.created_at) IS DISTINCT FROM
      (greatest(i.last_seen_at, excluded.last_seen_at), least(i.created_at, excluded.created_at))
"""
"""Only each provider's first and last own fact: while a rebuild defers the inventory, and for
the providers a batch saw only heartbeats of (nothing else in their row can change)."""

NODE_SEEN = """
UPDATE nodes n SET last_seen_at = u.seen
FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS u(provider_id, node_id, seen)
WHERE (n.provider_id, n.node_id) = (u.provider_id, u.node_id) AND n.last_seen_at < u.seen
"""
"""Heartbeats: a node's last_seen_at moves forward only (an older or repeated one writes
nothing)."""

INVENTORY_CHUNK = 5000


def build_deferred_inventory(conn: psycopg.Connection[Any]) -> bool:
    """Compute provider_inventory of the current schema for every provider, once, and end
    the deferral; False when the schema's inventory was not deferred (nothing done).

    Runs inside the caller's transaction. Deleting the deferral row waits for every batch
    that read it (`FOR SHARE`), and batches after it compute their providers' rows again.
    """
    deleted = conn.execute("DELETE FROM hwledger_meta.deferred_inventory "
                           "WHERE schema_name = current_schema()").rowcount
    if not deleted:
        return False
    rows = conn.execute("SELECT provider_id, last_seen_at, created_at FROM provider_inventory "
                        "ORDER BY provider_id").fetchall()
    for start in range(0, len(rows), INVENTORY_CHUNK):
        chunk = rows[start:start + INVENTORY_CHUNK]
        conn.execute(INVENTORY, {"providers": [r[0] for r in chunk],
                                 "seen": [r[1] for r in chunk],
                                 "first": [r[2] for r in chunk]})
    return True


def bulk_insert(conn: psycopg.Connection[Any], table: str, columns: Sequence[Column],
                rows: Sequence[Row], tail: str = "ON CONFLICT DO NOTHING") -> int:
    """INSERT ... SELECT FROM unnest(one array per column) [tail]; returns the rows written."""
    if not rows:
        return 0
    names = sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
    arrays = sql.SQL(", ").join(
        sql.SQL("%b::{}[]").format(sql.SQL("text" if c.type == "jsonb" else c.type))
        for c in columns)
    selected = sql.SQL(", ").join(
        sql.SQL("u.{}::jsonb" if c.type == "jsonb" else "u.{}").format(sql.Identifier(c.name))
        for c in columns)
    query = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS u({}) {}").format(
        sql.Identifier(table), names, selected, arrays, names, sql.SQL(tail))
    cur = conn.execute(query, [list(col) for col in zip(*rows, strict=True)])
    return cur.rowcount


def copy_rows(conn: psycopg.Connection[Any], table: str, columns: Sequence[Column],
              rows: Sequence[Row]) -> None:
    """COPY rows into an append-only table (about 4x faster than INSERT for large batches).

    Only for rows the projection has already deduplicated: a conflict aborts the batch.
    """
    if not rows:
        return
    query = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c.name) for c in columns))
    with conn.cursor() as cur, cur.copy(query) as copy:
        for row in rows:
            copy.write_row(row)


REFUSED = (psycopg.errors.DataError, psycopg.errors.IntegrityError,
           psycopg.errors.ProgramLimitExceeded)
"""PostgreSQL refused the data itself (SQLSTATE classes 22, 23, 54): no retry can help."""
MAX_REASON = 1000


def refusal(exc: psycopg.Error) -> str:
    """The dead-letter reason of a record PostgreSQL refused."""
    message = (exc.diag.message_primary or str(exc)).replace("\x00", "")
    return f"refused by PostgreSQL (SQLSTATE {exc.sqlstate}): {message}"[:MAX_REASON]


def split_batch(records: Sequence[Record], fence: Fence) -> list[tuple[Sequence[Record], Fence]]:
    """`records` as two consecutive halves, each with its fence: the second half starts each
    partition where the first left it (partitions not in `fence` stay unfenced)."""
    middle = len(records) // 2
    halves = (records[:middle], records[middle:])
    start = {key: expected for key, (expected, _) in fence.items()}
    parts: list[tuple[Sequence[Record], Fence]] = []
    for half in halves:
        after: dict[tuple[str, int], int] = {}
        for r in half:
            key = (r.topic, r.partition)
            if key in fence:
                after[key] = max(after.get(key, r.offset + 1), r.offset + 1)
        parts.append((half, {key: (start[key], end) for key, end in after.items()}))
        start.update(after)
    return parts


def summed(plans: Sequence[Plan]) -> Plan:
    """One plan's counts for batch metrics: what `plans` projected, dead-lettered and parked."""
    total = Plan()
    for plan in plans:
        total.projected.update(plan.projected)
        total.duplicates += plan.duplicates
        total.dead_letters.extend(plan.dead_letters)
        total.newly_parked.extend(plan.newly_parked)
        total.applied.extend(plan.applied)
    return total


class Writer:
    """Applies batches to one schema over one connection (the caller owns the connection)."""

    def __init__(self, conn: psycopg.Connection[Any], park_ttl: timedelta,
                 projection: str = PROJECTION, *, defer_inventory: bool = False,
                 auditor_keys: AuditorKeys | None = None) -> None:
        self.conn = conn
        self.park_ttl = park_ttl
        self.auditor_keys = auditor_keys
        self.projection = projection
        self.defer_inventory = defer_inventory
        self.known: dict[tuple[str, str], tuple[Any, ...]] = {}

    def stored_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int | None]:
        """The stored next offset per partition; None where nothing was ever committed."""
        wanted = sorted(set(partitions))
        rows = self.conn.execute(
            "SELECT partition, next_offset FROM projection_offsets "
            "WHERE projection = %s AND topic = %s AND partition = ANY(%s)",
            (self.projection, topic, wanted)).fetchall()
        self.conn.commit()
        found: dict[int, int | None] = dict.fromkeys(wanted)
        found.update({int(p): int(o) for p, o in rows})
        return found

    def reset_offset(self, topic: str, partition: int, offset: int) -> None:
        """Store `offset` as the partition's next offset and clear its halt (`hwledger offsets
        reset`); the projector, restarted, resumes the partition there."""
        self._set_offset_row(topic, partition, offset, None,
                             "next_offset = excluded.next_offset, halted_reason = NULL")

    def halt(self, topic: str, partition: int, reason: str) -> None:
        """Record that the partition is stopped because its log was lost (see logcheck)."""
        self._set_offset_row(topic, partition, 0, reason,
                             "halted_reason = excluded.halted_reason")

    def _set_offset_row(self, topic: str, partition: int, offset: int, reason: str | None,
                        update: str) -> None:
        with self.conn.transaction():
            self.conn.execute(
                sql.SQL("INSERT INTO projection_offsets (projection, topic, partition, "
                        "next_offset, halted_reason) VALUES (%s, %s, %s, %s, %s) "
                        "ON CONFLICT (projection, topic, partition) DO UPDATE SET {}").format(
                    sql.SQL(update)),
                (self.projection, topic, partition, offset, reason))

    def halted(self, topic: str, partitions: Iterable[int]) -> dict[int, str]:
        """partition -> halt reason, for the partitions of `partitions` that are stopped."""
        rows = self.conn.execute(
            "SELECT partition, halted_reason FROM projection_offsets WHERE projection = %s "
            "AND topic = %s AND partition = ANY(%s) AND halted_reason IS NOT NULL",
            (self.projection, topic, sorted(set(partitions)))).fetchall()
        self.conn.commit()
        return {int(p): str(r) for p, r in rows}

    def load_state(self, batch: Sequence[Decoded]) -> State:
        """The stored state `project` needs for `batch`, inside the current transaction."""
        refs = references(batch)
        state = State()
        conn = self.conn
        state.applied = {r[0] for r in conn.execute(
            "SELECT event_id::text FROM applied_events WHERE event_id = ANY(%s::uuid[])",
            (list(refs.event_ids),))}
        for sid, prov, node, system, software, slots in conn.execute(
                "SELECT s.event_id::text, s.provider_id, s.node_id, s.system_hardware_id::text, "
                "s.system_software_id::text, array(SELECT l.slot_index FROM system_gpu_link l "
                "WHERE l.system_hardware_id = s.system_hardware_id) "
                "FROM hardware_snapshots s WHERE s.event_id = ANY(%s::uuid[])",
                (list(refs.snapshot_ids),)):
            state.snapshots[sid] = KnownSnapshot(prov, node, frozenset(slots), system, software)
        for run_id, prov, node, status, first_slot, system, software, started in conn.execute(
                "SELECT r.run_id, r.provider_id, r.node_id, r.status, "
                "(SELECT min(u.slot_index) FROM run_gpu_usage u "
                "WHERE (u.provider_id, u.run_id) = (r.provider_id, r.run_id)), "
                "s.system_hardware_id::text, s.system_software_id::text, "
                "r.started_event_id::text FROM runs r "
                "JOIN hardware_snapshots s ON s.event_id = r.snapshot_event_id "
                "JOIN unnest(%s::text[], %s::text[]) AS k(provider_id, run_id) "
                "ON (k.provider_id, k.run_id) = (r.provider_id, r.run_id)",
                ([p for p, _ in refs.runs], [r for _, r in refs.runs])):
            state.runs[(prov, run_id)] = KnownRun(node, status, first_slot, system, software,
                                                  started)
        for parked_id, topic, partition, offset, raw, waiting, at in conn.execute(
                'SELECT parked_id, topic, partition, "offset", raw, waiting_for, occurred_at '
                "FROM parked_events WHERE provider_id = ANY(%s) "
                'ORDER BY topic, partition, "offset" FOR UPDATE', (list(refs.providers),)):
            item = decode(Record(topic, partition, offset, bytes(raw), parked_id))
            state.parked.setdefault(str(item.provider_id), []).append(Pending(item, waiting, at))
        return state

    def apply(self, records: Sequence[Record], fence: Fence) -> Plan:
        """Project and write `records` in one transaction, fenced on the partitions' offsets.

        The last line of defence against poison: when PostgreSQL refuses the data itself
        (`REFUSED`), the batch is split in two consecutive halves, each committed on its own,
        down to the one record that is refused, which goes to dead_letters with the database's
        message (as Kafka Connect's JDBC sink isolates a bad record). Returns the batch's plan
        (of its parts, summed).
        """
        try:
            return self._apply(records, fence)
        except REFUSED as exc:
            if len(records) == 1:
                return self._apply(records, fence, refused=refusal(exc))
            return summed([self.apply(part, part_fence)
                           for part, part_fence in split_batch(records, fence)])

    def _apply(self, records: Sequence[Record], fence: Fence, refused: str | None = None) -> Plan:
        batch = decode_all(records)
        if refused is not None:
            batch = [Decoded(d.record, d.event, refused) for d in batch]
        with self.conn.transaction():
            self._fence(fence)
            self._event_times(fence, latest_event_times(batch))
            state = self.load_state(batch)
            plan = project(batch, state, self.park_ttl, auditor_keys=self.auditor_keys)
            self._write(plan)
        self.remember(plan)
        return plan

    def _fence(self, fence: Fence) -> None:
        for (topic, partition), (expected, after) in sorted(fence.items()):
            if expected is None:
                cur = self.conn.execute(
                    "INSERT INTO projection_offsets (projection, topic, partition, next_offset) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (self.projection, topic, partition, after))
            else:
                cur = self.conn.execute(
                    "UPDATE projection_offsets SET next_offset = %s WHERE projection = %s "
                    "AND topic = %s AND partition = %s AND next_offset = %s",
                    (after, self.projection, topic, partition, expected))
            if cur.rowcount != 1:
                raise Fenced(f"{topic}[{partition}] moved away from offset {expected}")

    def _event_times(self, fence: Fence, latest: Mapping[tuple[str, int], datetime]) -> None:
        """Record the newest event time seen per fenced partition (the read side's asOf)."""
        keys = sorted(k for k in latest if k in fence)
        if keys:
            self.conn.execute(
                "UPDATE projection_offsets o SET last_event_at = greatest(o.last_event_at, u.at) "
                "FROM unnest(%s::text[], %s::int[], %s::timestamptz[]) AS u(topic, partition, at) "
                "WHERE o.projection = %s AND (o.topic, o.partition) = (u.topic, u.partition)",
                ([k[0] for k in keys], [k[1] for k in keys], [latest[k] for k in keys],
                 self.projection))

    def _fresh(self, table: str, rows: Mapping[Any, Any]) -> list[Row]:
        """The rows of a content-addressed table that can still change it: not yet written
        by this writer, or (`MERGE_ORDER`) with a lesser merge key than the one it wrote."""
        return [rows[k] for k in sorted(rows)
                if (known := self.known.get((table, str(k)))) is None
                or (table in MERGE_ORDER and merge_key(table, rows[k]) < known)]

    def _write(self, plan: Plan) -> None:
        self.write_rows(plan)
        self._write_bookkeeping(plan)

    def write_rows(self, plan: Plan) -> None:
        """The normalized read-model rows of `plan` (no inventory, offsets or dead letters)."""
        conn = self.conn
        bulk_insert(conn, "gpu_hardware", GPU_HARDWARE,
                    self._fresh("gpu_hardware", plan.gpu_hardware), UPSERTS["gpu_hardware"])
        bulk_insert(conn, "system_software", SYSTEM_SOFTWARE,
                    self._fresh("system_software", plan.system_software))
        bulk_insert(conn, "system_hardware", SYSTEM_HARDWARE,
                    self._fresh("system_hardware", plan.system_hardware),
                    UPSERTS["system_hardware"])
        bulk_insert(conn, "system_gpu_link", SYSTEM_GPU_LINK,
                    self._fresh("system_gpu_link", plan.system_gpu_links))
        copy_rows(conn, "hardware_snapshots", SNAPSHOTS, plan.snapshots)
        bulk_insert(conn, "nodes", NODES, [
            (n.provider_id, n.node_id, n.snapshot_event_id, n.occurred_at, n.first_seen_at,
             n.last_seen_at) for _, n in sorted(plan.nodes.items())], UPSERTS["nodes"])
        if plan.node_seen:
            keys = sorted(plan.node_seen)
            conn.execute(NODE_SEEN, ([p for p, _ in keys], [n for _, n in keys],
                                     [plan.node_seen[k] for k in keys]))
        copy_rows(conn, "runs", RUNS, plan.runs)
        copy_rows(conn, "run_gpu_usage", RUN_GPU_USAGE, plan.run_gpu_usage)
        if plan.run_finishes:
            finishes = plan.run_finishes
            conn.execute(
                "UPDATE runs r SET finished_event_id = u.event_id, finished_at = u.at, "
                "status = u.status FROM unnest(%s::text[], %s::text[], %s::uuid[], "
                "%s::timestamptz[], %s::text[]) AS u(provider_id, run_id, event_id, at, status) "
                "WHERE (r.provider_id, r.run_id) = (u.provider_id, u.run_id) "
                "AND r.finished_event_id IS NULL",
                ([f.provider_id for f in finishes], [f.run_id for f in finishes],
                 [f.finished_event_id for f in finishes], [f.finished_at for f in finishes],
                 [f.status for f in finishes]))
        copy_rows(conn, "run_hardware_metrics", RUN_METRICS, plan.run_metrics)
        bulk_insert(conn, "providers", PROVIDERS, [plan.providers[k] for k in sorted(
            plan.providers)], UPSERTS["providers"])
        bulk_insert(conn, "provider_audits", AUDITS, [plan.audits[k] for k in sorted(
            plan.audits)], UPSERTS["provider_audits"])

    def _write_bookkeeping(self, plan: Plan) -> None:
        conn = self.conn
        copy_rows(conn, "applied_events", APPLIED, plan.applied)
        if plan.unparked:
            conn.execute("DELETE FROM parked_events WHERE parked_id = ANY(%s)", (plan.unparked,))
        bulk_insert(conn, "dead_letters", DEAD_LETTERS, [
            (d.record.topic, d.record.partition, d.record.offset, d.record.raw, d.reason,
             d.event_type, d.event_id) for d in plan.dead_letters])
        bulk_insert(conn, "parked_events", PARKED, [
            (p.decoded.record.topic, p.decoded.record.partition, p.decoded.record.offset,
             p.decoded.record.raw, p.decoded.event.event_type if p.decoded.event else "",
             p.decoded.event_id, p.decoded.provider_id, p.waiting_for, p.occurred_at)
            for p in plan.newly_parked])
        self.write_inventory(plan)

    def write_inventory(self, plan: Plan) -> None:
        """Recompute the provider_inventory rows of the providers `plan` touched (their
        last_seen_at moves to their newest own fact, if the batch has one); a provider the
        batch saw only heartbeats of gets only its last_seen_at moved."""
        deferred = self._inventory_deferred()
        recomputed = set() if deferred else plan.touched
        alive = sorted((plan.touched | set(plan.last_seen)) - recomputed)
        for statement, providers in ((INVENTORY, sorted(recomputed)), (TOUCH_INVENTORY, alive)):
            if providers:
                self.conn.execute(statement, {
                    "providers": providers, "seen": [plan.last_seen.get(p) for p in providers],
                    "first": [plan.first_seen.get(p) for p in providers]})

    def _inventory_deferred(self) -> bool:
        """Is this schema's inventory still deferred (a rebuild before its switch)?

        Locks the deferral row for the transaction, so `build_deferred_inventory` cannot run
        between this check and the commit. Once the row is gone it never comes back.
        """
        if self.defer_inventory:
            self.defer_inventory = self.conn.execute(
                "SELECT 1 FROM hwledger_meta.deferred_inventory "
                "WHERE schema_name = current_schema() FOR SHARE").fetchone() is not None
        return self.defer_inventory

    def remember(self, plan: Plan) -> None:
        """After commit: content-addressed rows now exist and need no further inserts."""
        if len(self.known) > KNOWN_IDS_LIMIT:
            self.known.clear()
        for table, rows in (("gpu_hardware", plan.gpu_hardware),
                            ("system_software", plan.system_software),
                            ("system_hardware", plan.system_hardware),
                            ("system_gpu_link", plan.system_gpu_links)):
            for k, row in rows.items():
                key = merge_key(table, row) if table in MERGE_ORDER else ()
                known = self.known.get((table, str(k)))
                self.known[(table, str(k))] = key if known is None else min(known, key)

    def retry_dead_letter(self, dead_letter_id: int) -> Plan:
        """Re-project one dead letter's raw bytes; it is marked retried when it now applies.

        Raises LookupError for an unknown or already retried id, ValueError (with the reason)
        when the event is still bad or its reference is still missing; nothing changes then.
        """
        with self.conn.transaction():
            row = self.conn.execute(
                'SELECT topic, partition, "offset", raw, retried FROM dead_letters '
                "WHERE dead_letter_id = %s FOR UPDATE", (dead_letter_id,)).fetchone()
            if row is None:
                raise LookupError(f"no dead letter with id {dead_letter_id}")
            if row[4]:
                raise LookupError(f"dead letter {dead_letter_id} was already retried")
            batch = [decode(Record(row[0], row[1], row[2], bytes(row[3])))]
            state = self.load_state(batch)
            plan = project(batch, state, self.park_ttl, auditor_keys=self.auditor_keys)
            if plan.dead_letters:
                raise ValueError(plan.dead_letters[0].reason)
            if plan.newly_parked:
                raise ValueError(f"still waiting for {plan.newly_parked[0].waiting_for}")
            self._write(plan)
            self.conn.execute("UPDATE dead_letters SET retried = true WHERE dead_letter_id = %s",
                              (dead_letter_id,))
        return plan


def dead_letter_rows(conn: psycopg.Connection[Any], limit: int) -> list[dict[str, Any]]:
    """The newest dead letters, for `hwledger dlq list`."""
    cur = conn.execute(
        'SELECT dead_letter_id, topic, partition, "offset", event_type, event_id, retried, '
        "length(raw) AS raw_bytes, reason FROM dead_letters "
        "ORDER BY dead_letter_id DESC LIMIT %s", (limit,))
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def parked_rows(conn: psycopg.Connection[Any], limit: int) -> list[dict[str, Any]]:
    """Parked events, oldest first, for `hwledger dlq parked`."""
    cur = conn.execute(
        'SELECT parked_id, topic, partition, "offset", event_type, event_id, provider_id, '
        "waiting_for, occurred_at FROM parked_events ORDER BY occurred_at, parked_id LIMIT %s",
        (limit,))
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def to_json(rows: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(json.dumps(r, default=str, sort_keys=True) for r in rows)
