"""Row types: each names exactly the columns the writer inserts into its table."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from hwledger.projectors import rows
from hwledger.schemas import tables

ROW_TYPES: list[tuple[str, type[NamedTuple]]] = [
    ("gpu_hardware", rows.GpuHardware),
    ("system_hardware", rows.SystemHardware),
    ("system_gpu_link", rows.SystemGpuLink),
    ("system_software", rows.SystemSoftware),
    ("hardware_snapshots", rows.HardwareSnapshot),
    ("runs", rows.Run),
    ("run_gpu_usage", rows.RunGpuUsage),
    ("run_hardware_metrics", rows.RunHardwareMetrics),
    ("providers", rows.Provider),
    ("provider_audits", rows.ProviderAudit),
    ("applied_events", rows.AppliedEvent),
]


@pytest.mark.parametrize(("table", "row_type"), ROW_TYPES)
def test_a_row_type_names_its_tables_inserted_columns(table: str,
                                                      row_type: type[NamedTuple]) -> None:
    columns = tables.inserted_columns(tables.metadata.tables[table])
    assert sorted(row_type._fields) == sorted(c.name for c in columns)


def test_a_run_finish_names_columns_of_runs() -> None:
    assert set(rows.RunFinish._fields) <= {c.name for c in tables.metadata.tables["runs"].c}
