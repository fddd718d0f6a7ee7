-- hwledger read model, version 1. Applied into the connection's search_path schema, so the
-- same file builds the live schema and a rebuild's fresh versioned schema.

CREATE TABLE interface_type (
    interface_type_id   smallint PRIMARY KEY,
    name                text NOT NULL UNIQUE,
    family              text NOT NULL,
    lane_rate_gts       double precision CHECK (lane_rate_gts > 0),
    lanes               smallint CHECK (lanes > 0),
    bidirectional_gbps  double precision CHECK (bidirectional_gbps > 0)
);

CREATE TABLE gpu_hardware (
    gpu_hardware_id   uuid PRIMARY KEY,
    vendor            text NOT NULL,
    model             text NOT NULL,
    name              text NOT NULL,
    pci_vendor_id     text NOT NULL,
    pci_device_id     text NOT NULL,
    pci_subsystem_id  text,
    vram_bytes        bigint NOT NULL CHECK (vram_bytes > 0),
    interface         text NOT NULL CHECK (interface IN ('pcie', 'sxm'))
);

CREATE TABLE system_hardware (
    system_hardware_id  uuid PRIMARY KEY,
    cpu_model           text NOT NULL,
    cpu_vendor          text NOT NULL,
    cpu_cores           integer NOT NULL CHECK (cpu_cores > 0),
    cpu_threads         integer NOT NULL CHECK (cpu_threads >= cpu_cores),
    ram_bytes           bigint NOT NULL CHECK (ram_bytes >= 0),
    architecture        text NOT NULL,
    motherboard         text,
    gpu_count           integer NOT NULL CHECK (gpu_count >= 0)
);

CREATE TABLE system_gpu_link (
    system_hardware_id              uuid NOT NULL REFERENCES system_hardware,
    slot_index                      integer NOT NULL CHECK (slot_index >= 0),
    gpu_hardware_id                 uuid NOT NULL REFERENCES gpu_hardware,
    slot_native_interface_type_id   smallint REFERENCES interface_type,
    actual_interface_type_id        smallint REFERENCES interface_type,
    PRIMARY KEY (system_hardware_id, slot_index)
);

CREATE TABLE system_software (
    system_software_id  uuid PRIMARY KEY,
    os                  text NOT NULL,
    kernel_version      text NOT NULL,
    python_version      text NOT NULL,
    gpu_driver_version  text,
    cuda_version        text,
    rocm_version        text,
    runner_version      text
);

CREATE TABLE hardware_snapshots (
    event_id                              uuid PRIMARY KEY,
    provider_id                           text NOT NULL,
    node_id                               text NOT NULL,
    system_hardware_id                    uuid NOT NULL REFERENCES system_hardware,
    system_software_id                    uuid NOT NULL REFERENCES system_software,
    occurred_at                           timestamptz NOT NULL,
    allocatable_cpu_millicores            bigint NOT NULL CHECK (allocatable_cpu_millicores >= 0),
    allocatable_memory_bytes              bigint NOT NULL CHECK (allocatable_memory_bytes >= 0),
    allocatable_ephemeral_storage_bytes   bigint NOT NULL
        CHECK (allocatable_ephemeral_storage_bytes >= 0),
    storage                               jsonb NOT NULL DEFAULT '[]',
    gpu_power_limits_w                    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX hardware_snapshots_node ON hardware_snapshots (provider_id, node_id, occurred_at);

CREATE TABLE nodes (
    provider_id                 text NOT NULL,
    node_id                     text NOT NULL,
    current_snapshot_event_id   uuid NOT NULL REFERENCES hardware_snapshots,
    current_occurred_at         timestamptz NOT NULL,
    first_seen_at               timestamptz NOT NULL,
    last_seen_at                timestamptz NOT NULL,
    PRIMARY KEY (provider_id, node_id)
);

CREATE TABLE runs (
    run_id                    text PRIMARY KEY,
    provider_id               text NOT NULL,
    node_id                   text NOT NULL,
    snapshot_event_id         uuid NOT NULL REFERENCES hardware_snapshots,
    started_event_id          uuid NOT NULL UNIQUE,
    started_at                timestamptz NOT NULL,
    cpu_millicores            bigint NOT NULL CHECK (cpu_millicores >= 0),
    memory_bytes              bigint NOT NULL CHECK (memory_bytes >= 0),
    ephemeral_storage_bytes   bigint NOT NULL CHECK (ephemeral_storage_bytes >= 0),
    task_ref                  text,
    model_ref                 text,
    finished_event_id         uuid UNIQUE,
    finished_at               timestamptz,
    status                    text,
    CHECK ((finished_event_id IS NULL) = (finished_at IS NULL))
);
CREATE INDEX runs_unfinished ON runs (provider_id, node_id) WHERE finished_event_id IS NULL;

CREATE TABLE run_gpu_usage (
    run_id      text NOT NULL REFERENCES runs,
    slot_index  integer NOT NULL CHECK (slot_index >= 0),
    PRIMARY KEY (run_id, slot_index)
);

CREATE TABLE run_hardware_metrics (
    run_id                    text PRIMARY KEY REFERENCES runs,
    system_hardware_id        uuid NOT NULL REFERENCES system_hardware,
    slot_index                integer,
    system_software_id        uuid NOT NULL REFERENCES system_software,
    wall_clock_seconds        double precision CHECK (wall_clock_seconds >= 0),
    seconds_to_first_token    double precision CHECK (seconds_to_first_token >= 0),
    tokens_per_second         double precision CHECK (tokens_per_second >= 0),
    peak_vram_bytes           bigint CHECK (peak_vram_bytes >= 0),
    power_limit_w             integer CHECK (power_limit_w >= 0),
    measured_tflops           double precision CHECK (measured_tflops >= 0),
    gpu_sm_utilization_pct    double precision
        CHECK (gpu_sm_utilization_pct BETWEEN 0 AND 100),
    energy_wh                 double precision CHECK (energy_wh >= 0),
    FOREIGN KEY (system_hardware_id, slot_index)
        REFERENCES system_gpu_link (system_hardware_id, slot_index)
);

CREATE TABLE providers (
    provider_id     text PRIMARY KEY,
    host_uri        text NOT NULL,
    attributes      jsonb NOT NULL DEFAULT '{}',
    registered_at   timestamptz NOT NULL,
    event_id        uuid NOT NULL
);

CREATE TABLE provider_audits (
    provider_id   text NOT NULL,
    auditor       text NOT NULL,
    attributes    jsonb NOT NULL DEFAULT '{}',
    audited_at    timestamptz NOT NULL,
    event_id      uuid NOT NULL,
    PRIMARY KEY (provider_id, auditor)
);

CREATE TABLE provider_inventory (
    provider_id                   text PRIMARY KEY,
    host_uri                      text,
    last_seen_at                  timestamptz,
    node_count                    integer NOT NULL DEFAULT 0 CHECK (node_count >= 0),
    total_available_cpu           bigint NOT NULL DEFAULT 0 CHECK (total_available_cpu >= 0),
    total_available_memory        bigint NOT NULL DEFAULT 0 CHECK (total_available_memory >= 0),
    total_available_gpu           integer NOT NULL DEFAULT 0 CHECK (total_available_gpu >= 0),
    total_available_ephemeral     bigint NOT NULL DEFAULT 0
        CHECK (total_available_ephemeral >= 0),
    total_available_persistent    bigint NOT NULL DEFAULT 0
        CHECK (total_available_persistent >= 0),
    max_node_free_cpu             bigint NOT NULL DEFAULT 0 CHECK (max_node_free_cpu >= 0),
    max_node_free_memory          bigint NOT NULL DEFAULT 0 CHECK (max_node_free_memory >= 0),
    max_node_free_gpu             integer NOT NULL DEFAULT 0 CHECK (max_node_free_gpu >= 0),
    gpu_models                    text[] NOT NULL DEFAULT '{}',
    gpu_models_free               text[] NOT NULL DEFAULT '{}',
    storage_classes               text[] NOT NULL DEFAULT '{}',
    self_attributes               jsonb NOT NULL DEFAULT '{}',
    signed_attributes             jsonb NOT NULL DEFAULT '{}',
    audited_by                    text[] NOT NULL DEFAULT '{}',
    CHECK (gpu_models_free <@ gpu_models)
);
CREATE INDEX provider_inventory_gpu_models ON provider_inventory USING gin (gpu_models);
CREATE INDEX provider_inventory_gpu_models_free
    ON provider_inventory USING gin (gpu_models_free);
CREATE INDEX provider_inventory_storage_classes
    ON provider_inventory USING gin (storage_classes);
CREATE INDEX provider_inventory_audited_by ON provider_inventory USING gin (audited_by);
CREATE INDEX provider_inventory_self_attributes
    ON provider_inventory USING gin (self_attributes jsonb_path_ops);
CREATE INDEX provider_inventory_last_seen_at ON provider_inventory (last_seen_at);

-- Projection bookkeeping: exactly-once offsets, event dedup, dead letters, parked events.

CREATE TABLE projection_offsets (
    projection    text NOT NULL,
    topic         text NOT NULL,
    partition     integer NOT NULL CHECK (partition >= 0),
    next_offset   bigint NOT NULL CHECK (next_offset >= 0),
    last_event_at timestamptz,
    PRIMARY KEY (projection, topic, partition)
);

CREATE TABLE applied_events (
    event_id     uuid PRIMARY KEY,
    event_type   text NOT NULL
);

CREATE TABLE dead_letters (
    dead_letter_id  bigserial PRIMARY KEY,
    topic           text NOT NULL,
    partition       integer NOT NULL,
    "offset"        bigint NOT NULL,
    raw             bytea NOT NULL,
    reason          text NOT NULL,
    event_type      text,
    event_id        text,
    retried         boolean NOT NULL DEFAULT false,
    UNIQUE (topic, partition, "offset")
);

CREATE TABLE parked_events (
    parked_id       bigserial PRIMARY KEY,
    topic           text NOT NULL,
    partition       integer NOT NULL,
    "offset"        bigint NOT NULL,
    raw             bytea NOT NULL,
    event_type      text NOT NULL,
    event_id        text NOT NULL,
    provider_id     text NOT NULL,
    waiting_for     text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    UNIQUE (topic, partition, "offset")
);
CREATE INDEX parked_events_waiting_for ON parked_events (waiting_for);
