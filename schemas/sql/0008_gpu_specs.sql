-- The GPU spec catalog (bakeoff's lookup tables), seeded from seeds/gpu_specs.json by
-- `hwledger db seed`: per GPU model (PCI vendor:device id, the key gpu_hardware rows carry)
-- its architecture, VRAM type, memory bus, clocks, TDP and peak TFLOPS per compute format,
-- each figure naming its source. Reference data, not projected from the log.
CREATE TABLE gpu_architecture (
    gpu_architecture_id  smallint PRIMARY KEY,
    name                 text NOT NULL UNIQUE,
    vendor               text NOT NULL
);

CREATE TABLE vram_type (
    vram_type_id  smallint PRIMARY KEY,
    name          text NOT NULL UNIQUE
);

CREATE TABLE compute_formats (
    compute_format_id  smallint PRIMARY KEY,
    name               text NOT NULL UNIQUE,
    bits               smallint NOT NULL CHECK (bits > 0),
    kind               text NOT NULL CHECK (kind IN ('float', 'integer'))
);

CREATE TABLE tflops_source (
    tflops_source_id  smallint PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    kind              text NOT NULL CHECK (kind IN ('vendor', 'measured', 'derived')),
    title             text NOT NULL,
    url               text
);

CREATE TABLE gpu_spec (
    pci_vendor_id          text NOT NULL,
    pci_device_id          text NOT NULL,
    gpu_architecture_id    smallint NOT NULL REFERENCES gpu_architecture,
    vram_type_id           smallint NOT NULL REFERENCES vram_type,
    memory_bus_width_bits  integer NOT NULL CHECK (memory_bus_width_bits > 0),
    memory_data_rate_gbps  double precision NOT NULL CHECK (memory_data_rate_gbps > 0),
    memory_bandwidth_gbps  double precision NOT NULL CHECK (memory_bandwidth_gbps > 0),
    boost_clock_mhz        integer NOT NULL CHECK (boost_clock_mhz > 0),
    tdp_w                  integer NOT NULL CHECK (tdp_w > 0),
    tflops_source_id       smallint NOT NULL REFERENCES tflops_source,
    note                   text,
    PRIMARY KEY (pci_vendor_id, pci_device_id)
);

-- Dense peak TFLOPS (TOPS for integer formats) of a GPU model per compute format; no row where
-- the model has no path for the format. sparse_tflops: the 2:4 structured-sparsity figure.
CREATE TABLE gpu_tflops (
    pci_vendor_id      text NOT NULL,
    pci_device_id      text NOT NULL,
    compute_format_id  smallint NOT NULL REFERENCES compute_formats,
    dense_tflops       double precision NOT NULL CHECK (dense_tflops > 0),
    sparse_tflops      double precision CHECK (sparse_tflops > 0),
    tflops_source_id   smallint NOT NULL REFERENCES tflops_source,
    PRIMARY KEY (pci_vendor_id, pci_device_id, compute_format_id),
    FOREIGN KEY (pci_vendor_id, pci_device_id) REFERENCES gpu_spec
);

-- The compute format a run's measured_tflops counts (RunFinished v3); NULL for older runs.
ALTER TABLE run_hardware_metrics ADD COLUMN compute_format text;

-- A run's measured TFLOPS against the catalog's peak: the sum of the dense peaks, in the run's
-- compute format, of the GPUs in the run's slots. NULL when the run names no format or has no
-- GPUs, or when one of its GPUs has no catalog figure for the format.
CREATE VIEW run_tflops_utilization AS
SELECT m.provider_id, m.run_id, m.compute_format, m.measured_tflops, p.gpu_count,
       CASE WHEN p.gpu_count > 0 AND p.known = p.gpu_count THEN p.peak END AS peak_tflops,
       CASE WHEN p.gpu_count > 0 AND p.known = p.gpu_count
            THEN 100 * m.measured_tflops / p.peak END AS tflops_utilization_pct
FROM run_hardware_metrics m
LEFT JOIN compute_formats f ON f.name = m.compute_format
CROSS JOIN LATERAL (
    SELECT count(*) AS gpu_count, count(t.dense_tflops) AS known, sum(t.dense_tflops) AS peak
    FROM run_gpu_usage u
    JOIN system_gpu_link l
        ON (l.system_hardware_id, l.slot_index) = (m.system_hardware_id, u.slot_index)
    JOIN gpu_hardware g ON g.gpu_hardware_id = l.gpu_hardware_id
    LEFT JOIN gpu_tflops t
        ON (t.pci_vendor_id, t.pci_device_id, t.compute_format_id)
           = (g.pci_vendor_id, g.pci_device_id, f.compute_format_id)
    WHERE (u.provider_id, u.run_id) = (m.provider_id, m.run_id)
) p;
