-- Node tokens (issue 15): `gpu_node_tokens_free` holds `token#n` for each step n of
-- (1, 2, 4, 8, .. 65536) up to the most free GPUs of one model that one node of the provider
-- has, for the vendor token (`nvidia`), the model token (`nvidia/a100`) and the model's ram
-- token (`nvidia/a100/80gi`, ram in whole GiB, halves rounded up). A replica's GPUs are of one
-- model on one node, so a unit of n GPUs per replica needs some node with the largest step at
-- most n free: `gpu_node_tokens_free && ARRAY[..]`, which the GIN index answers, where
-- gpu_models_free only says that one such GPU is free somewhere.
--
-- The projector writes the column with provider_inventory's row (projectors/inventory_sql.py,
-- `node_tokens`); the fill below is a copy of that rule for the rows a schema already holds.
ALTER TABLE provider_inventory ADD COLUMN gpu_node_tokens_free text[] NOT NULL DEFAULT '{}';

WITH node_kinds AS (
    SELECT g.provider_id, g.node_id, lower(g.vendor) AS vendor,
           lower(g.vendor || '/' || g.model) AS model,
           (g.vram_bytes + 536870912) / 1073741824 AS ram, count(*) FILTER (WHERE g.free) AS free
    FROM node_gpus g JOIN (SELECT provider_id FROM provider_inventory) p USING (provider_id)
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
    FROM node_counts c
    JOIN unnest('{1,2,4,8,16,32,64,128,256,512,1024,2048,4096,8192,16384,32768,65536}'
                ::int[]) AS s ON s <= c.most
    GROUP BY c.provider_id
)
UPDATE provider_inventory i SET gpu_node_tokens_free = n.tokens
FROM node_tokens n WHERE n.provider_id = i.provider_id;

CREATE INDEX provider_inventory_gpu_node_tokens_free
    ON provider_inventory USING gin (gpu_node_tokens_free);
