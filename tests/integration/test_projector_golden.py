"""Golden history: a 202-event fixture projects (through the broker) to asserted tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from hwledger.projectors.checksums import table_checksums
from hwledger.schemas.units import GiB
from tests.integration.projector_support import (
    INVENTORY_DISAGREES_WITH_NODES,
    encoded,
    load_jsonl,
    project_all,
    publish,
)

GOLDEN = Path(__file__).parent.parent / "data" / "golden_history.jsonl"


def inventory(db: psycopg.Connection[Any], provider: str) -> dict[str, Any]:
    cur = db.execute("SELECT * FROM provider_inventory WHERE provider_id = %s", (provider,))
    names = [d.name for d in cur.description or ()]
    row = cur.fetchone()
    assert row is not None
    return dict(zip(names, row, strict=True))


def count(db: psycopg.Connection[Any], query: str) -> int:
    row = db.execute(query).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.slow
def test_golden_history_projects_to_the_expected_tables(
        database_url: str, db_schema: str, db: psycopg.Connection[Any], topic: str,
        kafka_config: dict[str, Any]) -> None:
    events = load_jsonl(GOLDEN)
    assert len(events) >= 200
    publish(kafka_config, topic, encoded(events))
    metrics = project_all(database_url, db_schema, topic, kafka_config)

    alpha = inventory(db, "prov-alpha")
    assert alpha["host_uri"] == "https://prov-alpha.example.net:8443"
    assert alpha["last_seen_at"] == max(d["occurred_at"] for _, d in events
                                        if d["provider_id"] == "prov-alpha")
    assert alpha["node_count"] == 2
    assert alpha["gpu_models"] == ["nvidia", "nvidia/a100", "nvidia/h100"]
    assert alpha["gpu_models_free"] == ["nvidia", "nvidia/h100"]
    assert (alpha["total_available_cpu"], alpha["total_available_memory"],
            alpha["total_available_gpu"], alpha["total_available_ephemeral"],
            alpha["total_available_persistent"]) == (
        158_000 + 48_000, (1144 + 384) * GiB, 3, (2600 + 800) * GiB, 9000 * GiB)
    assert (alpha["max_node_free_cpu"], alpha["max_node_free_memory"],
            alpha["max_node_free_gpu"]) == (158_000, 1144 * GiB, 3)
    assert alpha["storage_classes"] == ["beta2", "beta3"]
    assert alpha["self_attributes"] == {"region": "us-west", "tier": "platinum"}
    assert alpha["signed_attributes"] == {"akash1auditor": {"tier": "premium"}}
    assert alpha["audited_by"] == ["akash1auditor"]

    beta = inventory(db, "prov-beta")
    assert beta["gpu_models"] == ["amd", "amd/mi250x"]  # after the swap; late rtx4090 ignored
    assert beta["gpu_models_free"] == ["amd", "amd/mi250x"]
    assert (beta["total_available_gpu"], beta["total_available_cpu"],
            beta["total_available_memory"]) == (1, 174_000, 1272 * GiB)
    assert beta["audited_by"] == ["akash1auditor"]

    gamma = inventory(db, "prov-gamma")
    assert gamma["gpu_models"] == ["nvidia", "nvidia/l40s", "nvidia/t4"]
    assert gamma["gpu_models_free"] == gamma["gpu_models"]
    assert (gamma["node_count"], gamma["total_available_gpu"], gamma["max_node_free_gpu"],
            gamma["total_available_cpu"], gamma["total_available_persistent"]) == (
        2, 2, 2, 380_000, 7000 * GiB)
    assert gamma["audited_by"] == [] and gamma["storage_classes"] == ["beta3"]

    late = next(d for _, d in events if d.get("gpus") and d["gpus"][0]["model"] == "rtx4090")
    assert count(db, "SELECT count(*) FROM nodes n JOIN hardware_snapshots s "
                     "ON s.event_id = n.current_snapshot_event_id "
                     f"WHERE s.event_id = '{late['event_id']}'") == 0
    counts = {table: rows for table, (rows, _) in table_checksums(db).items()}
    assert counts == {
        "gpu_hardware": 7, "system_hardware": 7, "system_gpu_link": 8 + 4 + 2 + 2 + 2 + 1,
        "system_software": 1, "hardware_snapshots": 41, "nodes": 5, "runs": 75,
        "run_gpu_usage": 151, "run_hardware_metrics": 71, "providers": 3,
        "provider_audits": 3, "provider_inventory": 3, "provider_nodes": 3,
        "applied_events": 195,
    }
    assert count(db, "SELECT count(*) FROM runs WHERE finished_event_id IS NULL") == 4
    assert count(db, "SELECT count(*) FROM runs WHERE status = 'failed'") == 10
    reasons = [r[0] for r in db.execute("SELECT reason FROM dead_letters ORDER BY \"offset\"")]
    assert len(reasons) == 2
    assert any("GPU slot(s) [9]" in r for r in reasons)
    assert any("finished twice with different outcomes" in r for r in reasons)
    assert count(db, "SELECT count(*) FROM parked_events") == 0
    assert count(db, INVENTORY_DISAGREES_WITH_NODES) == 0
    assert count(db, "SELECT sum(next_offset) FROM projection_offsets") == len(events)
    newest = db.execute("SELECT max(last_event_at) FROM projection_offsets").fetchone()
    assert newest == (max(d["occurred_at"] for _, d in events),)

    scraped = {(s.name, tuple(s.labels.values())): s.value
               for m in metrics.registry.collect() for s in m.samples}
    assert scraped[("hwledger_projector_events_total", ("HardwareSnapshotted",))] == 41
    assert scraped[("hwledger_projector_dead_letters_total", ())] == 2
    assert scraped[("hwledger_projector_duplicates_total", ())] == 5
