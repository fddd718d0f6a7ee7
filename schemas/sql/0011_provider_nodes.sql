-- The bin-packer's inventory, one row per provider (issue 15): every node of the provider's
-- current snapshots with its free cpu / memory / ephemeral storage and its free GPUs grouped by
-- kind, plus the provider's persistent storage pools. The projector writes a provider's row in
-- the same statement batch as its provider_inventory row, from the same views (the inventory
-- rule of migration 0005), so the prefilter's totals and the bin-packer's nodes are always one
-- picture; the query service reads a batch of candidates' rows by primary key instead of
-- aggregating the views per request.
--
-- nodes: [[node_id, cpu, memory, ephemeral, [[vendor, model, vram_bytes, interface,
--          [slot, ...]], ...]], ...], nodes by node_id, GPU groups by their first free slot,
--        slots ascending (groups with no free slot left out).
-- persistent: {storage class: bytes} summed over the nodes' volumes, at most INT64_MAX (the
--             largest request total, so a saturated pool holds whatever a request asks).
CREATE TABLE provider_nodes (
    provider_id  text PRIMARY KEY,
    nodes        jsonb NOT NULL,
    persistent   jsonb NOT NULL
);

-- The rows of the given providers (one per provider, also without nodes), as the projector
-- and this migration write them. `free` is read once (a CTE used twice is materialized): each
-- node_free row costs a lookup of the node's unfinished runs.
CREATE FUNCTION node_inventory(provider_ids text[])
RETURNS TABLE (provider_id text, nodes jsonb, persistent jsonb)
LANGUAGE sql STABLE AS $$
WITH free AS (
    SELECT f.provider_id, f.node_id, f.cpu, f.memory, f.ephemeral, f.storage
    FROM node_free f WHERE f.provider_id = ANY(provider_ids)
), groups AS (
    SELECT g.provider_id, g.node_id, min(g.slot_index) AS first_slot,
           jsonb_build_array(g.vendor, g.model, g.vram_bytes, g.interface,
                             jsonb_agg(g.slot_index ORDER BY g.slot_index)) AS gpu_group
    FROM node_gpus g
    WHERE g.provider_id = ANY(provider_ids) AND g.free
    GROUP BY g.provider_id, g.node_id, g.vendor, g.model, g.vram_bytes, g.interface
), gpus AS (
    SELECT provider_id, node_id, jsonb_agg(gpu_group ORDER BY first_slot) AS gpus
    FROM groups GROUP BY provider_id, node_id
), per_provider AS (
    SELECT f.provider_id,
           jsonb_agg(jsonb_build_array(f.node_id, f.cpu, f.memory, f.ephemeral,
                                       coalesce(g.gpus, '[]'::jsonb)) ORDER BY f.node_id) AS nodes
    FROM free f LEFT JOIN gpus g USING (provider_id, node_id)
    GROUP BY f.provider_id
), pools AS (
    SELECT c.provider_id, jsonb_object_agg(c.storage_class, c.bytes) AS persistent
    FROM (SELECT f.provider_id, v ->> 'class' AS storage_class,
                 least(sum((v ->> 'bytes')::numeric), 9223372036854775807)::bigint AS bytes
          FROM free f CROSS JOIN LATERAL jsonb_array_elements(f.storage) v
          GROUP BY f.provider_id, v ->> 'class') c
    GROUP BY c.provider_id
)
SELECT t.provider_id, coalesce(n.nodes, '[]'::jsonb), coalesce(s.persistent, '{}'::jsonb)
FROM unnest(provider_ids) AS t(provider_id)
LEFT JOIN per_provider n USING (provider_id) LEFT JOIN pools s USING (provider_id)
$$;

INSERT INTO provider_nodes
SELECT * FROM node_inventory(ARRAY(SELECT provider_id FROM provider_inventory));
