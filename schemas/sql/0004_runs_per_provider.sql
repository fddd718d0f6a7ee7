-- A run id is its provider's own name for the run, so runs are keyed by (provider_id, run_id):
-- two providers may use the same run id. The tables that reference a run carry its provider;
-- existing rows take it from their run.
ALTER TABLE run_gpu_usage ADD COLUMN provider_id text;
ALTER TABLE run_hardware_metrics ADD COLUMN provider_id text;
UPDATE run_gpu_usage u SET provider_id = r.provider_id FROM runs r WHERE r.run_id = u.run_id;
UPDATE run_hardware_metrics m SET provider_id = r.provider_id FROM runs r
    WHERE r.run_id = m.run_id;
ALTER TABLE run_gpu_usage
    DROP CONSTRAINT run_gpu_usage_run_id_fkey,
    DROP CONSTRAINT run_gpu_usage_pkey,
    ALTER COLUMN provider_id SET NOT NULL;
ALTER TABLE run_hardware_metrics
    DROP CONSTRAINT run_hardware_metrics_run_id_fkey,
    DROP CONSTRAINT run_hardware_metrics_pkey,
    ALTER COLUMN provider_id SET NOT NULL;
ALTER TABLE runs DROP CONSTRAINT runs_pkey, ADD PRIMARY KEY (provider_id, run_id);
ALTER TABLE run_gpu_usage
    ADD PRIMARY KEY (provider_id, run_id, slot_index),
    ADD FOREIGN KEY (provider_id, run_id) REFERENCES runs;
ALTER TABLE run_hardware_metrics
    ADD PRIMARY KEY (provider_id, run_id),
    ADD FOREIGN KEY (provider_id, run_id) REFERENCES runs;
