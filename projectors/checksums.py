"""Per-table checksums of the read model: equal checksums mean equal table contents.

Used to prove convergence (replays, interleavings, crashes, rebalances) and to verify that a
rebuilt schema equals the live one. Bookkeeping that names log positions (offsets, dead
letters, parked events) is not part of the read model and is not checksummed.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

READ_MODEL_TABLES = (
    "gpu_hardware", "system_hardware", "system_gpu_link", "system_software",
    "hardware_snapshots", "nodes", "runs", "run_gpu_usage", "run_hardware_metrics",
    "providers", "provider_audits", "provider_inventory", "applied_events",
)


def table_checksums(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, str]]:
    """table -> (row count, md5 over its rows in a canonical order) in the current schema."""
    found = {}
    for table in READ_MODEL_TABLES:
        row = conn.execute(sql.SQL(
            "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') "
            "FROM {} t").format(sql.Identifier(table))).fetchone()
        assert row is not None
        found[table] = (int(row[0]), str(row[1]))
    conn.commit()
    return found
