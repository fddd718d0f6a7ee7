"""The `provider_inventory` statements: a batch's touched providers recomputed from the
inventory views (`INVENTORY`, and their bin-packer rows in provider_nodes, `NODE_INVENTORY`),
only their last event time while a rebuild defers the rows (`TOUCH_INVENTORY`), node heartbeats
(`NODE_SEEN`), and every row built once before a rebuilt schema is switched in
(`build_deferred_inventory`).
"""

from __future__ import annotations

from typing import Any

import psycopg

from hwledger.projectors.statements import (
    changed_rows_upsert,
)
from hwledger.schemas import tables, tokens, validation

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


STEPS = "'{" + ",".join(map(str, tokens.COUNT_STEPS)) + "}'::int[]"


def node_tokens(providers: str) -> str:
    """The CTEs of a provider's free GPUs per node and kind (`node_kinds`, `node_models`), and
    of its node tokens (`node_tokens`; `tokens.node_token`: `token#n` for each step n of
    COUNT_STEPS up to the most free GPUs of one model that some node has, for its vendor,
    model and model/ram tokens), for the providers joined as `providers`. Migration 0012
    filled the column with a copy of this rule."""
    return f"""node_kinds AS (
    SELECT g.provider_id, g.node_id, lower(g.vendor) AS vendor,
           lower(g.vendor || '/' || g.model) AS model,
           (g.vram_bytes + 536870912) / 1073741824 AS ram, count(*) FILTER (WHERE g.free) AS free
    FROM node_gpus g JOIN {providers} USING (provider_id)
    GROUP BY 1, 2, 3, 4, 5
), node_models AS (
    SELECT provider_id, node_id, model, sum(free) AS free FROM node_kinds GROUP BY 1, 2, 3
), node_counts AS (
    SELECT provider_id, model || '/' || ram || 'gi' AS token, max(free) AS most
    FROM (SELECT provider_id, node_id, model, ram, sum(free) AS free
          FROM node_kinds GROUP BY 1, 2, 3, 4) r GROUP BY 1, 2
    UNION ALL SELECT provider_id, model, max(free) FROM node_models GROUP BY 1, 2
    UNION ALL SELECT k.provider_id, k.vendor, max(m.free)
    FROM node_kinds k JOIN node_models m USING (provider_id, node_id, model) GROUP BY 1, 2
), node_tokens AS (
    SELECT c.provider_id, array_agg(c.token || '#' || s ORDER BY c.token COLLATE "C", s) AS tokens
    FROM node_counts c JOIN unnest({STEPS}) AS s ON s <= c.most GROUP BY c.provider_id
)"""


INVENTORY = f"""
WITH {TOUCHED}, {node_tokens("touched t")}, free_gpus AS (
    SELECT provider_id, node_id, sum(free)::bigint AS gpu
    FROM node_kinds GROUP BY provider_id, node_id
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
    FROM node_kinds GROUP BY provider_id, vendor, model
), tokens AS (
    SELECT m.provider_id, array_agg(DISTINCT v.token ORDER BY v.token) AS installed,
           array_agg(DISTINCT v.token ORDER BY v.token) FILTER (WHERE m.free) AS free
    FROM models m CROSS JOIN LATERAL (VALUES (m.vendor), (m.model)) AS v(token)
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
    total_available_leased_ip, reclamation_window, created_at, location, organization,
    gpu_node_tokens_free)
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
       coalesce(a.organization, p.attributes ->> '{ORGANIZATION}'), coalesce(n.tokens, '{{}}')
FROM touched t LEFT JOIN totals x USING (provider_id) LEFT JOIN tokens k USING (provider_id)
LEFT JOIN node_tokens n USING (provider_id)
LEFT JOIN classes s USING (provider_id) LEFT JOIN signed a USING (provider_id)
LEFT JOIN providers p USING (provider_id) LEFT JOIN held_ips h USING (provider_id)
""" + changed_rows_upsert("i", "provider_id", _INVENTORY_UPDATES)


NODE_INVENTORY = """
INSERT INTO provider_nodes AS p (provider_id, nodes, persistent)
SELECT provider_id, nodes, persistent FROM node_inventory(%(providers)s::text[])
ON CONFLICT (provider_id) DO UPDATE SET nodes = excluded.nodes, persistent = excluded.persistent
WHERE (p.nodes, p.persistent) IS DISTINCT FROM (excluded.nodes, excluded.persistent)
"""
"""The providers' provider_nodes rows (the bin-packer's per-node inventory, migration 0011),
recomputed from the same views as their provider_inventory row, in the same transaction."""


USING_GPUS = """
SELECT DISTINCT n.provider_id FROM nodes n
JOIN hardware_snapshots s ON s.event_id = n.current_snapshot_event_id
JOIN system_gpu_link l ON l.system_hardware_id = s.system_hardware_id
WHERE l.gpu_hardware_id = ANY(%s::uuid[]) ORDER BY n.provider_id
"""
"""The providers whose nodes' current snapshots hold one of the given GPU rows."""


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


def recompute(conn: psycopg.Connection[Any], providers: list[str], seen: list[Any],
              first: list[Any]) -> None:
    """The providers' provider_inventory rows (with their newest and oldest own fact in
    `seen` / `first`) and provider_nodes rows, recomputed from the inventory views."""
    conn.execute(INVENTORY, {"providers": providers, "seen": seen, "first": first})
    conn.execute(NODE_INVENTORY, {"providers": providers})


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
        recompute(conn, [r[0] for r in chunk], [r[1] for r in chunk], [r[2] for r in chunk])
    return True
