-- Per GPU token, the most free GPUs of one model on one node (issue 15): the prefilter's
-- per-unit check that some node could hold one replica's GPUs of the models the unit accepts,
-- which the fleet-wide `max_node_free_gpu` (any model) and the token lists cannot tell. A
-- `vendor/model` token maps to the most free GPUs of that model on one node, a `vendor`
-- token to the most of any one of its models on one node (all GPUs of a replica share a
-- model); only tokens with a free GPU appear, as in gpu_models_free.
ALTER TABLE provider_inventory
    ADD COLUMN gpu_tokens_max_node_free jsonb NOT NULL DEFAULT '{}'::jsonb;

-- Existing rows, from their provider_nodes rows (migration 0011), as the projector computes
-- them from the views.
UPDATE provider_inventory i SET gpu_tokens_max_node_free = m.maxima
FROM (
    SELECT t.provider_id, jsonb_object_agg(t.token, t.most) AS maxima
    FROM (
        SELECT p.provider_id, v.token, max(p.free) AS most
        FROM (
            SELECT n.provider_id, node ->> 0 AS node_id, lower(g ->> 0) AS vendor,
                   lower((g ->> 0) || '/' || (g ->> 1)) AS model,
                   sum(jsonb_array_length(g -> 4)) AS free
            FROM provider_nodes n
            CROSS JOIN LATERAL jsonb_array_elements(n.nodes) node
            CROSS JOIN LATERAL jsonb_array_elements(node -> 4) g
            GROUP BY n.provider_id, node ->> 0, lower(g ->> 0), lower((g ->> 0) || '/' || (g ->> 1))
        ) p
        CROSS JOIN LATERAL (VALUES (p.vendor), (p.model)) AS v(token)
        WHERE p.free > 0
        GROUP BY p.provider_id, v.token
    ) t
    GROUP BY t.provider_id
) m
WHERE m.provider_id = i.provider_id;
