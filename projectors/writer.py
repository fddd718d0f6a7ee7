"""The Postgres side of the projector: load the state a batch needs, apply its Plan atomically.

One `Writer.apply` call is ONE transaction holding, in this order: the offset fence (a
compare-and-set on `projection_offsets` for every partition in the batch), every row change of
the batch, dead letters, parked events, and the recomputed `provider_inventory` rows of the
providers the batch touched (while a rebuild defers the inventory, only their last event time:
`build_deferred_inventory` computes every row once before readers switch). An instance that
lost a partition finds the stored offset moved and gets `offsets.Fenced`, writing nothing.
Statements are bulk: COPY for append-only tables of already-deduplicated rows, one `unnest`
INSERT ... ON CONFLICT per upserted table, with arrays sent in binary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import psycopg

from hwledger.projectors.batch import latest_event_times, references
from hwledger.projectors.dead_letters import REFUSED, refusal, split_batch, summed
from hwledger.projectors.inventory_sql import (
    NODE_INVENTORY,
    NODE_SEEN,
    TOUCH_INVENTORY,
    USING_GPUS,
    recompute,
)
from hwledger.projectors.offsets import PROJECTION, Offsets
from hwledger.projectors.plan import (
    Decoded,
    Fence,
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
from hwledger.projectors.rows import MERGE_ORDER, merge_key
from hwledger.projectors.statements import (
    APPLIED,
    AUDITS,
    DEAD_LETTERS,
    GPU_HARDWARE,
    NODES,
    PARKED,
    PROVIDERS,
    RUN_GPU_USAGE,
    RUN_METRICS,
    RUNS,
    SNAPSHOTS,
    SYSTEM_GPU_LINK,
    SYSTEM_HARDWARE,
    SYSTEM_SOFTWARE,
    UPSERTS,
    Row,
    bulk_insert,
    bulk_replace,
    copy_rows,
)
from hwledger.schemas.signatures import AuditorKeys

KNOWN_IDS_LIMIT = 200_000


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

    @property
    def offsets(self) -> Offsets:
        """The projection's offset rows over the writer's current connection (the projector
        replaces it after a lost connection)."""
        return Offsets(self.conn, self.projection)

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
            self.offsets.fence(fence)
            self.offsets.event_times(fence, latest_event_times(batch))
            state = self.load_state(batch)
            plan = project(batch, state, self.park_ttl, auditor_keys=self.auditor_keys)
            self._write(plan)
        self.remember(plan)
        return plan

    def _fresh(self, table: str, rows: Mapping[Any, Any]) -> list[Row]:
        """The rows of a content-addressed table that can still change it: not yet written
        by this writer, or (`MERGE_ORDER`) with a lesser merge key than the one it wrote."""
        return [rows[k] for k in sorted(rows)
                if (known := self.known.get((table, str(k)))) is None
                or (table in MERGE_ORDER and merge_key(table, rows[k]) < known)]

    def _write(self, plan: Plan) -> None:
        self._write_bookkeeping(plan, self.write_rows(plan))

    def write_rows(self, plan: Plan) -> list[str]:
        """The normalized read-model rows of `plan` (no inventory, offsets or dead letters);
        returns the ids of the gpu_hardware rows a lesser report replaced (their interface may
        have changed, which the provider_nodes rows of every provider using them show)."""
        conn = self.conn
        replaced = bulk_replace(conn, "gpu_hardware", GPU_HARDWARE,
                                self._fresh("gpu_hardware", plan.gpu_hardware),
                                UPSERTS["gpu_hardware"])
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
        return replaced

    def _write_bookkeeping(self, plan: Plan, replaced_gpus: Sequence[str]) -> None:
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
        self.write_inventory(plan, replaced_gpus)

    def write_inventory(self, plan: Plan, replaced_gpus: Sequence[str] = ()) -> None:
        """Recompute the provider_inventory rows of the providers `plan` touched (their
        last_seen_at moves to their newest own fact, if the batch has one); a provider the
        batch saw only heartbeats of gets only its last_seen_at moved. The other providers
        whose nodes use a gpu_hardware row in `replaced_gpus` get their provider_nodes row
        recomputed (the GPU groups carry its interface)."""
        deferred = self._inventory_deferred()
        recomputed = set() if deferred else plan.touched
        alive = sorted((plan.touched | set(plan.last_seen)) - recomputed)
        if recomputed:
            providers = sorted(recomputed)
            recompute(self.conn, providers, [plan.last_seen.get(p) for p in providers],
                      [plan.first_seen.get(p) for p in providers])
        if replaced_gpus and not deferred:
            using = [p for (p,) in self.conn.execute(USING_GPUS, (list(replaced_gpus),))
                     if p not in recomputed]
            if using:
                self.conn.execute(NODE_INVENTORY, {"providers": using})
        if alive:
            self.conn.execute(TOUCH_INVENTORY, {
                "providers": alive, "seen": [plan.last_seen.get(p) for p in alive],
                "first": [plan.first_seen.get(p) for p in alive]})

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


