"""The read model's tables as one SQLAlchemy Core `MetaData`: the single description of their
columns that the projector's writer (column lists and array casts), the query service's
statements and the benchmarks' row builders all take theirs from.

The DDL itself lives in the numbered migrations (`schemas/sql/`), which are history and never
change; `tests/integration/test_tables.py` checks that this metadata matches the schema the
migrations build (names, order, types, nullability). Tables are declared without a schema:
callers set the search_path (or a schema translate map) to the schema they work in.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION, JSONB, UUID
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

metadata = MetaData()
LATER = {"later": True}
"""Column `info` of a column the projector fills after the insert (an UPDATE) or the database
fills itself (a serial id, a default): not part of the writer's inserted columns."""

TIMESTAMPTZ = DateTime(timezone=True)


def _required(name: str, type_: Any, **kw: Any) -> Column[Any]:
    return Column(name, type_, nullable=False, **kw)


interface_type = Table(
    "interface_type", metadata,
    Column("interface_type_id", SmallInteger, primary_key=True),
    _required("name", Text), _required("family", Text),
    Column("lane_rate_gts", DOUBLE_PRECISION), Column("lanes", SmallInteger),
    Column("bidirectional_gbps", DOUBLE_PRECISION),
)
gpu_hardware = Table(
    "gpu_hardware", metadata,
    Column("gpu_hardware_id", UUID, primary_key=True),
    _required("vendor", Text), _required("model", Text), _required("name", Text),
    _required("pci_vendor_id", Text), _required("pci_device_id", Text),
    Column("pci_subsystem_id", Text), _required("vram_bytes", BigInteger),
    _required("interface", Text),
)
system_hardware = Table(
    "system_hardware", metadata,
    Column("system_hardware_id", UUID, primary_key=True),
    _required("cpu_model", Text), _required("cpu_vendor", Text),
    _required("cpu_cores", Integer), _required("cpu_threads", Integer),
    _required("ram_bytes", BigInteger), _required("architecture", Text),
    Column("motherboard", Text), _required("gpu_count", Integer),
    Column("total_vram_bytes", BigInteger),
    Column("cpu_base_clock_mhz", Integer), Column("cpu_peak_clock_mhz", Integer),
    Column("memory_speed_mhz", Integer), Column("memory_channels", Integer),
    Column("memory_interleave_profile", Text), Column("bar_size_mb", BigInteger),
)
system_gpu_link = Table(
    "system_gpu_link", metadata,
    Column("system_hardware_id", UUID, primary_key=True),
    Column("slot_index", Integer, primary_key=True),
    _required("gpu_hardware_id", UUID),
    Column("slot_native_interface_type_id", SmallInteger),
    Column("actual_interface_type_id", SmallInteger),
)
system_software = Table(
    "system_software", metadata,
    Column("system_software_id", UUID, primary_key=True),
    _required("os", Text), _required("kernel_version", Text), _required("python_version", Text),
    Column("gpu_driver_version", Text), Column("cuda_version", Text),
    Column("rocm_version", Text), Column("runner_version", Text),
)
hardware_snapshots = Table(
    "hardware_snapshots", metadata,
    Column("event_id", UUID, primary_key=True),
    _required("provider_id", Text), _required("node_id", Text),
    _required("system_hardware_id", UUID), _required("system_software_id", UUID),
    _required("occurred_at", TIMESTAMPTZ),
    _required("allocatable_cpu_millicores", BigInteger),
    _required("allocatable_memory_bytes", BigInteger),
    _required("allocatable_ephemeral_storage_bytes", BigInteger),
    _required("storage", JSONB), _required("gpu_power_limits_w", JSONB),
)
nodes = Table(
    "nodes", metadata,
    Column("provider_id", Text, primary_key=True), Column("node_id", Text, primary_key=True),
    _required("current_snapshot_event_id", UUID), _required("current_occurred_at", TIMESTAMPTZ),
    _required("first_seen_at", TIMESTAMPTZ), _required("last_seen_at", TIMESTAMPTZ),
)
runs = Table(
    "runs", metadata,
    Column("run_id", Text, primary_key=True),
    Column("provider_id", Text, primary_key=True), _required("node_id", Text),
    _required("snapshot_event_id", UUID), _required("started_event_id", UUID),
    _required("started_at", TIMESTAMPTZ), _required("cpu_millicores", BigInteger),
    _required("memory_bytes", BigInteger), _required("ephemeral_storage_bytes", BigInteger),
    Column("task_ref", Text), Column("model_ref", Text),
    Column("finished_event_id", UUID, info=LATER), Column("finished_at", TIMESTAMPTZ, info=LATER),
    Column("status", Text, info=LATER), _required("leased_ips", Integer),
)
run_gpu_usage = Table(
    "run_gpu_usage", metadata,
    Column("run_id", Text, primary_key=True), Column("slot_index", Integer, primary_key=True),
    Column("provider_id", Text, primary_key=True),
)
run_hardware_metrics = Table(
    "run_hardware_metrics", metadata,
    Column("run_id", Text, primary_key=True), _required("system_hardware_id", UUID),
    Column("slot_index", Integer), _required("system_software_id", UUID),
    Column("wall_clock_seconds", DOUBLE_PRECISION),
    Column("seconds_to_first_token", DOUBLE_PRECISION),
    Column("tokens_per_second", DOUBLE_PRECISION), Column("peak_vram_bytes", BigInteger),
    Column("power_limit_w", Integer), Column("measured_tflops", DOUBLE_PRECISION),
    Column("gpu_sm_utilization_pct", DOUBLE_PRECISION), Column("energy_wh", DOUBLE_PRECISION),
    Column("provider_id", Text, primary_key=True), Column("compute_format", Text),
)
providers = Table(
    "providers", metadata,
    Column("provider_id", Text, primary_key=True), _required("host_uri", Text),
    _required("attributes", JSONB), _required("registered_at", TIMESTAMPTZ),
    _required("event_id", UUID),
    Column("leased_ip_capacity", BigInteger), Column("reclamation_window", BigInteger),
)
provider_audits = Table(
    "provider_audits", metadata,
    Column("provider_id", Text, primary_key=True), Column("auditor", Text, primary_key=True),
    _required("attributes", JSONB), _required("audited_at", TIMESTAMPTZ),
    _required("event_id", UUID),
)
provider_inventory = Table(
    "provider_inventory", metadata,
    Column("provider_id", Text, primary_key=True),
    Column("host_uri", Text), Column("last_seen_at", TIMESTAMPTZ),
    _required("node_count", Integer),
    _required("total_available_cpu", BigInteger), _required("total_available_memory", BigInteger),
    _required("total_available_gpu", Integer),
    _required("total_available_ephemeral", BigInteger),
    _required("total_available_persistent", BigInteger),
    _required("max_node_free_cpu", BigInteger), _required("max_node_free_memory", BigInteger),
    _required("max_node_free_gpu", Integer),
    _required("gpu_models", ARRAY(Text)), _required("gpu_models_free", ARRAY(Text)),
    _required("storage_classes", ARRAY(Text)),
    _required("self_attributes", JSONB), _required("signed_attributes", JSONB),
    _required("audited_by", ARRAY(Text)),
    Column("total_available_leased_ip", BigInteger), Column("reclamation_window", BigInteger),
    Column("created_at", TIMESTAMPTZ), Column("location", Text), Column("organization", Text),
    _required("gpu_node_tokens_free", ARRAY(Text)),
)
provider_nodes = Table(
    "provider_nodes", metadata,
    Column("provider_id", Text, primary_key=True),
    _required("nodes", JSONB), _required("persistent", JSONB),
)
gpu_architecture = Table(
    "gpu_architecture", metadata,
    Column("gpu_architecture_id", SmallInteger, primary_key=True),
    _required("name", Text), _required("vendor", Text),
)
vram_type = Table(
    "vram_type", metadata,
    Column("vram_type_id", SmallInteger, primary_key=True), _required("name", Text),
)
compute_formats = Table(
    "compute_formats", metadata,
    Column("compute_format_id", SmallInteger, primary_key=True),
    _required("name", Text), _required("bits", SmallInteger), _required("kind", Text),
)
tflops_source = Table(
    "tflops_source", metadata,
    Column("tflops_source_id", SmallInteger, primary_key=True),
    _required("name", Text), _required("kind", Text), _required("title", Text),
    Column("url", Text),
)
gpu_spec = Table(
    "gpu_spec", metadata,
    Column("pci_vendor_id", Text, primary_key=True),
    Column("pci_device_id", Text, primary_key=True),
    _required("gpu_architecture_id", SmallInteger), _required("vram_type_id", SmallInteger),
    _required("memory_bus_width_bits", Integer),
    _required("memory_data_rate_gbps", DOUBLE_PRECISION),
    _required("memory_bandwidth_gbps", DOUBLE_PRECISION),
    _required("boost_clock_mhz", Integer), _required("tdp_w", Integer),
    _required("tflops_source_id", SmallInteger), Column("note", Text),
)
gpu_tflops = Table(
    "gpu_tflops", metadata,
    Column("pci_vendor_id", Text, primary_key=True),
    Column("pci_device_id", Text, primary_key=True),
    Column("compute_format_id", SmallInteger, primary_key=True),
    _required("dense_tflops", DOUBLE_PRECISION), Column("sparse_tflops", DOUBLE_PRECISION),
    _required("tflops_source_id", SmallInteger),
)
"""The GPU spec catalog (migration 0008): seeded reference data keyed by PCI vendor:device id
(`seeds/gpu_specs.json`), not projected from the log."""
projection_offsets = Table(
    "projection_offsets", metadata,
    Column("projection", Text, primary_key=True), Column("topic", Text, primary_key=True),
    Column("partition", Integer, primary_key=True), _required("next_offset", BigInteger),
    Column("last_event_at", TIMESTAMPTZ), Column("halted_reason", Text),
)
applied_events = Table(
    "applied_events", metadata,
    Column("event_id", UUID, primary_key=True), _required("event_type", Text),
    Column("occurred_at", TIMESTAMPTZ),
)
retention_horizons = Table(
    "retention_horizons", metadata,
    Column("table_name", Text, primary_key=True), _required("pruned_before", TIMESTAMPTZ),
)
dead_letters = Table(
    "dead_letters", metadata,
    Column("dead_letter_id", BigInteger, primary_key=True, info=LATER),
    _required("topic", Text), _required("partition", Integer), _required("offset", BigInteger),
    _required("raw", LargeBinary), _required("reason", Text),
    Column("event_type", Text), Column("event_id", Text),
    _required("retried", Boolean, info=LATER),
)
parked_events = Table(
    "parked_events", metadata,
    Column("parked_id", BigInteger, primary_key=True, info=LATER),
    _required("topic", Text), _required("partition", Integer), _required("offset", BigInteger),
    _required("raw", LargeBinary), _required("event_type", Text), _required("event_id", Text),
    _required("provider_id", Text), _required("waiting_for", Text),
    _required("occurred_at", TIMESTAMPTZ),
)

node_free = Table(
    "node_free", metadata,
    Column("provider_id", Text), Column("node_id", Text), Column("system_hardware_id", UUID),
    Column("storage", JSONB), Column("cpu", BigInteger), Column("memory", BigInteger),
    Column("ephemeral", BigInteger), Column("persistent", BigInteger),
    info={"view": True},
)
"""View (migration 0005): the free capacity of every node's current snapshot, net of its
unfinished runs: THE inventory rule, read by the writer's provider_inventory and the
bin-packer."""
node_gpus = Table(
    "node_gpus", metadata,
    Column("provider_id", Text), Column("node_id", Text), Column("slot_index", Integer),
    Column("vendor", Text), Column("model", Text), Column("vram_bytes", BigInteger),
    Column("interface", Text), Column("free", Boolean),
    info={"view": True},
)
"""View (migration 0005): every GPU slot of every node's current snapshot, `free` unless an
unfinished run holds it."""

run_tflops_utilization = Table(
    "run_tflops_utilization", metadata,
    Column("provider_id", Text), Column("run_id", Text), Column("compute_format", Text),
    Column("measured_tflops", DOUBLE_PRECISION), Column("gpu_count", BigInteger),
    Column("peak_tflops", DOUBLE_PRECISION), Column("tflops_utilization_pct", DOUBLE_PRECISION),
    info={"view": True},
)
"""View (migration 0008): a run's measured TFLOPS over the catalog's dense peak of its GPUs in
its compute format."""

_DIALECT = PGDialect_psycopg()  # type: ignore[no-untyped-call]


def sql_type(column: Column[Any]) -> str:
    """The column's PostgreSQL type as written in a cast (`bigint`, `timestamp with time
    zone`, `text[]`...)."""
    return str(column.type.compile(dialect=_DIALECT)).lower()


def inserted_columns(table: Table) -> tuple[Column[Any], ...]:
    """The columns the projector writes when it inserts a row of `table`, in table order."""
    return tuple(c for c in table.columns if not c.info.get("later"))
