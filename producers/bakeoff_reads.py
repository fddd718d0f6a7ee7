"""The read-model statements of `hwledger export`: one SQLAlchemy Core select per list of
`bakeoff_export.ReadModel`, through the table metadata of `schemas.tables`, optionally for one
provider. Pure: they build statements and run nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, select, true
from sqlalchemy.sql.elements import ColumnElement

from hwledger.schemas import tables

METRICS = ("wall_clock_seconds", "seconds_to_first_token", "tokens_per_second",
           "peak_vram_bytes", "power_limit_w", "measured_tflops", "gpu_sm_utilization_pct",
           "energy_wh", "compute_format")
"""The run_hardware_metrics columns a run file carries under `metrics`."""


def _provider(column: ColumnElement[Any], provider_id: str | None) -> ColumnElement[bool]:
    return column == provider_id if provider_id is not None else true()


def runs_statement(provider_id: str | None, since: datetime | None) -> Select[Any]:
    """Finished runs (optionally of one provider, finished at or after `since`) with their
    snapshot's system, software and power limits and their metrics."""
    r, s, m = tables.runs, tables.hardware_snapshots, tables.run_hardware_metrics
    finished = r.c.finished_at >= since if since is not None else true()
    return (select(*r.c, s.c.system_hardware_id, s.c.system_software_id,
                   s.c.gpu_power_limits_w, *(m.c[name] for name in METRICS))
            .join(s, s.c.event_id == r.c.snapshot_event_id)
            .outerjoin(m, and_(m.c.provider_id == r.c.provider_id, m.c.run_id == r.c.run_id))
            .where(r.c.status.is_not(None), finished, _provider(r.c.provider_id, provider_id))
            .order_by(r.c.provider_id, r.c.run_id))


def gpu_usage_statement(provider_id: str | None) -> Select[Any]:
    """The GPU slots every run used."""
    u = tables.run_gpu_usage
    return (select(u.c.provider_id, u.c.run_id, u.c.slot_index)
            .where(_provider(u.c.provider_id, provider_id)))


def systems_statement(provider_id: str | None) -> Select[Any]:
    """Each (provider, system) snapshotted: its first and last snapshot times."""
    s = tables.hardware_snapshots
    return (select(s.c.provider_id, s.c.system_hardware_id,
                   func.min(s.c.occurred_at).label("first_seen_at"),
                   func.max(s.c.occurred_at).label("last_seen_at"))
            .where(_provider(s.c.provider_id, provider_id))
            .group_by(s.c.provider_id, s.c.system_hardware_id)
            .order_by(s.c.provider_id, s.c.system_hardware_id))


def _snapshotted(column: ColumnElement[Any], provider_id: str | None) -> ColumnElement[bool]:
    s = tables.hardware_snapshots
    return column.in_(select(s.c.system_hardware_id)
                      .where(_provider(s.c.provider_id, provider_id)))


def system_hardware_statement(provider_id: str | None) -> Select[Any]:
    """The system_hardware rows of the snapshotted systems."""
    h = tables.system_hardware
    return select(h).where(_snapshotted(h.c.system_hardware_id, provider_id))


def gpu_links_statement(provider_id: str | None) -> Select[Any]:
    """Every GPU slot of the snapshotted systems: the GPU and its interface names."""
    link, gpu = tables.system_gpu_link, tables.gpu_hardware
    native, actual = tables.interface_type.alias("native"), tables.interface_type.alias("actual")
    return (select(link.c.system_hardware_id, link.c.slot_index, gpu.c.name,
                   gpu.c.pci_vendor_id, gpu.c.pci_device_id, gpu.c.pci_subsystem_id,
                   gpu.c.vram_bytes, native.c.name.label("slot_native_interface"),
                   actual.c.name.label("actual_interface"))
            .join(gpu, gpu.c.gpu_hardware_id == link.c.gpu_hardware_id)
            .outerjoin(native, native.c.interface_type_id
                       == link.c.slot_native_interface_type_id)
            .outerjoin(actual, actual.c.interface_type_id == link.c.actual_interface_type_id)
            .where(_snapshotted(link.c.system_hardware_id, provider_id))
            .order_by(link.c.system_hardware_id, link.c.slot_index))


def software_statement(provider_id: str | None) -> Select[Any]:
    """The system_software rows the snapshots name."""
    sw, s = tables.system_software, tables.hardware_snapshots
    return select(sw).where(sw.c.system_software_id.in_(
        select(s.c.system_software_id).where(_provider(s.c.provider_id, provider_id))))


def interface_types_statement() -> Select[Any]:
    """Every interface_type row."""
    return select(tables.interface_type).order_by(tables.interface_type.c.interface_type_id)
