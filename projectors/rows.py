"""The rows a projection hands the writer: one named type per written table.

Each type's field names are the table's column names (tests/unit/test_rows.py keeps them
equal), so the writer takes the columns from the row type and no module depends on a position.
They are NamedTuples, so the writer still sends them to COPY and `unnest` as plain tuples.

Content-addressed tables (gpu_hardware, system_hardware) whose rows carry attributes their id
does not cover are merged by `MERGE_ORDER`: the stored row is the one with the least values.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, TypeVar


class GpuHardware(NamedTuple):
    gpu_hardware_id: str
    vendor: str
    model: str
    name: str
    pci_vendor_id: str | None
    pci_device_id: str | None
    pci_subsystem_id: str | None
    vram_bytes: int
    interface: str


class SystemHardware(NamedTuple):
    system_hardware_id: str
    cpu_model: str
    cpu_vendor: str
    cpu_cores: int
    cpu_threads: int
    ram_bytes: int
    architecture: str
    motherboard: str | None
    gpu_count: int
    total_vram_bytes: int
    cpu_base_clock_mhz: int | None
    cpu_peak_clock_mhz: int | None
    memory_speed_mhz: int | None
    memory_channels: int | None
    memory_interleave_profile: str | None
    bar_size_mb: int | None


class SystemGpuLink(NamedTuple):
    system_hardware_id: str
    slot_index: int
    gpu_hardware_id: str
    slot_native_interface_type_id: int | None
    actual_interface_type_id: int | None


class SystemSoftware(NamedTuple):
    system_software_id: str
    os: str
    kernel_version: str
    python_version: str
    gpu_driver_version: str | None
    cuda_version: str | None
    rocm_version: str | None
    runner_version: str | None


class HardwareSnapshot(NamedTuple):
    event_id: str
    provider_id: str
    node_id: str
    system_hardware_id: str
    system_software_id: str
    occurred_at: datetime
    allocatable_cpu_millicores: int
    allocatable_memory_bytes: int
    allocatable_ephemeral_storage_bytes: int
    storage: str
    gpu_power_limits_w: str


class Run(NamedTuple):
    run_id: str
    provider_id: str
    node_id: str
    snapshot_event_id: str
    started_event_id: str
    started_at: datetime
    cpu_millicores: int
    memory_bytes: int
    ephemeral_storage_bytes: int
    task_ref: str | None
    model_ref: str | None
    leased_ips: int


class RunGpuUsage(NamedTuple):
    run_id: str
    slot_index: int
    provider_id: str


class RunFinish(NamedTuple):
    """Not a table row: the columns of `runs` a RunFinished sets, by (provider_id, run_id)."""

    provider_id: str
    run_id: str
    finished_event_id: str
    finished_at: datetime
    status: str


class RunHardwareMetrics(NamedTuple):
    run_id: str
    system_hardware_id: str
    slot_index: int | None
    system_software_id: str
    wall_clock_seconds: float | None
    seconds_to_first_token: float | None
    tokens_per_second: float | None
    peak_vram_bytes: int | None
    power_limit_w: int | None
    measured_tflops: float | None
    gpu_sm_utilization_pct: float | None
    energy_wh: float | None
    provider_id: str
    compute_format: str | None


class Provider(NamedTuple):
    provider_id: str
    host_uri: str
    attributes: str
    registered_at: datetime
    event_id: str
    leased_ip_capacity: int | None
    reclamation_window: int | None


class ProviderAudit(NamedTuple):
    provider_id: str
    auditor: str
    attributes: str
    audited_at: datetime
    event_id: str


class AppliedEvent(NamedTuple):
    event_id: str
    event_type: str
    occurred_at: datetime


MERGE_ORDER: dict[str, tuple[str, ...]] = {
    "gpu_hardware": ("name", "interface"),
    "system_hardware": ("cpu_model", "cpu_vendor", "cpu_cores", "architecture", "motherboard"),
}
"""Content-addressed tables with attributes their id does not cover: the stored row is the one
whose values of these columns are least (strings by code point, i.e. PostgreSQL's "C"
collation; a null motherboard as the empty string). A merge by minimum is commutative and
associative, so any interleaving and any batch size give the same row."""


def merge_key(table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The value `MERGE_ORDER` compares rows of `table` (sharing an id) by."""
    return tuple("" if (value := getattr(row, name)) is None else value
                 for name in MERGE_ORDER[table])


Merged = TypeVar("Merged", GpuHardware, SystemHardware)


def keep_least(rows: dict[str, Merged], table: str, key: str, row: Merged) -> None:
    """Keep, under `key` (the row's id), the row with the least `merge_key`."""
    current = rows.get(key)
    if current is None or merge_key(table, row) < merge_key(table, current):
        rows[key] = row
