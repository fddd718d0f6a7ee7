-- The inventory rule, once: what a node's current snapshot offers, net of its unfinished runs.
-- The projector's provider_inventory rows (the prefilter's totals) and the bin-packer's
-- per-node figures both read these views, so the prefilter and the exact check cannot disagree
-- about what is free (docs/decisions.md, "One inventory rule").

-- Free cpu / memory / ephemeral storage per node (never below zero), plus its storage volumes
-- and their total bytes (persistent storage is not held by runs).
CREATE VIEW node_free AS
SELECT n.provider_id, n.node_id, s.system_hardware_id, s.storage,
       greatest(0, s.allocatable_cpu_millicores - coalesce(h.cpu, 0))::bigint AS cpu,
       greatest(0, s.allocatable_memory_bytes - coalesce(h.memory, 0))::bigint AS memory,
       greatest(0, s.allocatable_ephemeral_storage_bytes - coalesce(h.ephemeral, 0))::bigint
           AS ephemeral,
       (SELECT coalesce(sum((v ->> 'bytes')::bigint), 0)
        FROM jsonb_array_elements(s.storage) v)::bigint AS persistent
FROM nodes n
JOIN hardware_snapshots s ON s.event_id = n.current_snapshot_event_id
LEFT JOIN LATERAL (
    SELECT sum(r.cpu_millicores) AS cpu, sum(r.memory_bytes) AS memory,
           sum(r.ephemeral_storage_bytes) AS ephemeral
    FROM runs r
    WHERE r.provider_id = n.provider_id AND r.node_id = n.node_id
      AND r.finished_event_id IS NULL
) h ON true;

-- Every GPU slot of every node's current snapshot; `free` unless an unfinished run of the node
-- holds the slot. (The held slots are read per node, through runs_unfinished: a NOT EXISTS in
-- the select list would be planned as one hashed scan of every unfinished run of the fleet.)
CREATE VIEW node_gpus AS
SELECT n.provider_id, n.node_id, l.slot_index, g.vendor, g.model, g.vram_bytes, g.interface,
       l.slot_index <> ALL (h.slots) AS free
FROM nodes n
JOIN hardware_snapshots s ON s.event_id = n.current_snapshot_event_id
CROSS JOIN LATERAL (
    SELECT coalesce(array_agg(u.slot_index), '{}') AS slots
    FROM runs r JOIN run_gpu_usage u ON (u.provider_id, u.run_id) = (r.provider_id, r.run_id)
    WHERE r.provider_id = n.provider_id AND r.node_id = n.node_id
      AND r.finished_event_id IS NULL
) h
JOIN system_gpu_link l ON l.system_hardware_id = s.system_hardware_id
JOIN gpu_hardware g ON g.gpu_hardware_id = l.gpu_hardware_id;
