"""The read routes' answers as pydantic models: the OpenAPI response schemas of
`/v1/providers`, `/v1/providers/{owner}`, `.../runs/{run_id}`, `/v1/runs/{run_id}`,
`/v1/hardware/{id}`, `/v1/gpus`, `/readyz` and `/healthz`, with the examples /docs shows.

Fields are snake_case here and camelCase on the wire (`to_camel`, the rule `query/reads.py`
applies to column names); every key is always present, `None` where there is no value; times
are `fleet.iso` strings (docs/adr/0069-camel-case-answers-and-one-timestamp-format.md). The
routes return `reads.Reads`' dicts as they are; the models describe them, and the tests
validate real answers against them (`extra="forbid"`: an answer key the model lacks fails).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from hwledger.query import read_examples

Timestamp = str
"""RFC 3339 UTC with milliseconds, e.g. 2026-12-03T10:15:00.000Z (`fleet.iso`)."""


class Shape(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Partition(Shape):
    projection: str
    topic: str
    partition: int
    next_offset: int


class AsOf(Shape):
    """The read's projection position, newest projected event and offsets."""

    schema_: str = Field(alias="schema", description="the read-model schema read")
    position: int
    last_event_at: Timestamp | None
    partitions: list[Partition]


class NodeFree(Shape):
    cpu_millicores: int
    memory_bytes: int
    ephemeral_storage_bytes: int
    gpu_slots: list[int]


class Node(Shape):
    node: str
    snapshot_event_id: str
    system_hardware_id: str
    system_software_id: str
    first_seen_at: Timestamp | None
    last_seen_at: Timestamp | None
    free: NodeFree | None = Field(description="allocatable minus what unfinished runs hold")


class Totals(Shape):
    """The provider's free capacity summed over its nodes (`leased_ip`: None = no limit)."""

    cpu: int | None
    memory: int | None
    gpu: int | None
    ephemeral: int | None
    persistent: int | None
    leased_ip: int | None


class MaxNodeFree(Shape):
    cpu: int | None
    memory: int | None
    gpu: int | None


class Provider(Shape):
    """One provider's inventory row, nodes with free capacity, and audits."""

    model_config = ConfigDict(json_schema_extra={"examples": [read_examples.PROVIDER]})

    owner: str
    host_uri: str | None
    last_seen_at: Timestamp | None
    created_at: Timestamp | None
    location: str | None
    organization: str | None
    reclamation_window: int | None = Field(description="seconds")
    node_count: int
    totals: Totals
    max_node_free: MaxNodeFree
    gpu_models: list[str]
    gpu_models_free: list[str]
    storage_classes: list[str]
    attributes: dict[str, Any] = Field(description="self-declared attributes, as stored")
    signed_attributes: dict[str, Any] = Field(description="per auditor, as stored")
    audited_by: list[str]
    nodes: list[Node]


class PeakTflops(Shape):
    dense: float
    sparse: float | None
    source: str


class Source(Shape):
    kind: Literal["vendor", "measured", "derived"]
    title: str
    url: str | None


class GpuSpec(Shape):
    """The GPU spec catalog's figures for one model (seeds/gpu_specs.json)."""

    architecture: str
    vram_type: str
    memory_bus_width_bits: int
    memory_data_rate_gbps: float
    memory_bandwidth_gbps: float
    boost_clock_mhz: int
    tdp_w: int
    note: str | None
    source: str
    peak_tflops: dict[str, PeakTflops | None] = Field(
        description="per compute format (fp64 .. int8); None where the model has no such path")
    sources: dict[str, Source] = Field(description="every source a figure names, by name")


class HardwareGpu(Shape):
    slot_index: int
    gpu_hardware_id: str
    vendor: str
    model: str
    name: str
    pci_vendor_id: str
    pci_device_id: str
    pci_subsystem_id: str | None
    vram_bytes: int
    interface: Literal["pcie", "sxm"]
    slot_native_interface: str | None
    actual_interface: str | None
    spec: GpuSpec | None


class Hardware(Shape):
    """One system_hardware row with its GPUs per slot."""

    model_config = ConfigDict(json_schema_extra={"examples": [read_examples.HARDWARE]})

    system_hardware_id: str
    cpu_model: str
    cpu_vendor: str
    cpu_cores: int
    cpu_threads: int
    ram_bytes: int
    architecture: str
    motherboard: str | None
    gpu_count: int
    total_vram_bytes: int | None
    cpu_base_clock_mhz: int | None
    cpu_peak_clock_mhz: int | None
    memory_speed_mhz: int | None
    memory_channels: int | None
    memory_interleave_profile: str | None
    bar_size_mb: int | None
    gpus: list[HardwareGpu]


class Software(Shape):
    os: str
    kernel_version: str
    python_version: str
    gpu_driver_version: str | None
    cuda_version: str | None
    rocm_version: str | None
    runner_version: str | None


class RunMetrics(Shape):
    slot_index: int | None
    wall_clock_seconds: float | None
    seconds_to_first_token: float | None
    tokens_per_second: float | None
    peak_vram_bytes: int | None
    power_limit_w: int | None
    measured_tflops: float | None
    gpu_sm_utilization_pct: float | None
    energy_wh: float | None
    compute_format: str | None
    peak_tflops: float | None = Field(
        description="the summed dense peaks of the run's GPUs in its compute format")
    tflops_utilization_pct: float | None = Field(description="measured over peak, in percent")


class RunResources(Shape):
    cpu_millicores: int
    memory_bytes: int
    ephemeral_storage_bytes: int
    gpu_slots: list[int]


class Run(Shape):
    """One run of one provider with its hardware, software and metrics (None until
    RunFinished)."""

    model_config = ConfigDict(json_schema_extra={"examples": [read_examples.RUN]})

    run_id: str
    owner: str
    node: str
    status: str | None = Field(description="None while running; succeeded or failed")
    started_at: Timestamp | None
    finished_at: Timestamp | None
    task_ref: str | None
    model_ref: str | None
    snapshot_event_id: str
    resources: RunResources
    hardware: Hardware | None
    software: Software | None
    metrics: RunMetrics | None


class GpuCounts(Shape):
    installed: int
    free: int
    providers: int
    providers_free: int


class GpuKind(GpuCounts):
    vendor: str
    model: str
    ram: str = Field(description="whole GiB, e.g. 80Gi")
    interface: str


class Gpus(Shape):
    """Installed and free GPUs of the online providers per kind, and the totals."""

    model_config = ConfigDict(json_schema_extra={"examples": [read_examples.GPUS]})

    totals: GpuCounts
    gpus: list[GpuKind]
    online_since: Timestamp
    as_of: AsOf


class ProviderRow(Shape):
    owner: str
    host_uri: str | None
    region: str | None
    audited_by: list[str]
    gpu_models: list[str]
    free_gpus: int
    last_seen_at: Timestamp | None
    staleness: Literal["fresh", "ageing", "offline"]


class Providers(Shape):
    """The first `limit` providers by owner, online or not, with their staleness."""

    model_config = ConfigDict(json_schema_extra={"examples": [read_examples.PROVIDERS]})

    providers: list[ProviderRow]
    truncated: bool
    now: Timestamp = Field(description="the service clock")
    online_since: Timestamp
    as_of: AsOf


class Ready(Shape):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "ready", "schema": "hwledger", "position": 1234}]})

    status: Literal["ready"]
    schema_: str = Field(alias="schema")
    position: int


class Health(Shape):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"]
