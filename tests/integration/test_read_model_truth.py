"""The read model is a pure function of the log: conflicting producer reports converge whatever
the interleaving and batch size, the prefilter's totals agree with the bin-packer's per-node
figures, the table metadata is the schema the migrations build, and only a provider's own
facts keep it alive."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwledger.deploy.bench.fleet import history
from hwledger.projectors.plan import Record
from hwledger.projectors.writer import Writer
from hwledger.query import repository
from hwledger.query.inventory import GpuGroup, NodeInventory, ProviderNodes, provider_totals
from hwledger.query.placement_run import inventories
from hwledger.schemas import codec, tables
from hwledger.schemas.db import connect
from hwledger.schemas.validation import INT64_MAX
from tests import factories as f
from tests.integration.projector_support import fresh_schema
from tests.integration.test_projector_convergence import interleave, project_in_batches

SLOW = settings(max_examples=8, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@SLOW
@given(seed=st.integers(0, 2**32), providers=st.integers(2, 5), events=st.integers(30, 160),
       shuffle=st.randoms(use_true_random=False))
@pytest.mark.slow
def test_conflicting_reports_converge_across_interleavings_and_batch_sizes(
        database_url: str, seed: int, providers: int, events: int,
        shuffle: random.Random) -> None:
    log = list(history(seed, providers, events, nodes_per_provider=2, conflicting=True))
    messages = [(str(d["provider_id"]), codec.encode(t, d)) for t, d in log]
    with fresh_schema(database_url) as schema, connect(database_url, schema) as conn:
        rebuild_sized = project_in_batches(conn, messages, random.Random(0), len(messages))
        for _ in range(2):
            live = project_in_batches(conn, interleave(messages, shuffle, 0), shuffle, 40)
            assert live == rebuild_sized


def test_the_least_report_wins_in_the_tables(database_url: str) -> None:
    names = ["nvidia h100", "NVIDIA H100 80GB HBM3", "H100 SXM5"]
    snapshots = [f.snapshot(f"p{i}", gpus=[f.gpu(0, "h100-sxm", name=n)], minutes=i)
                 for i, n in enumerate(names)]
    with fresh_schema(database_url) as schema, connect(database_url, schema) as conn:
        writer = Writer(conn, timedelta(hours=6))
        for i, s in enumerate(snapshots):  # one batch each: the least comes last
            writer.apply([Record("t", 0, i, codec.encode("HardwareSnapshotted", s))], {})
        assert conn.execute("SELECT name FROM gpu_hardware").fetchall() == [("H100 SXM5",)]


def _inventory(conn: Any) -> dict[str, dict[str, Any]]:
    cursor = conn.execute(f"SELECT provider_id, {', '.join(FREE_COLUMNS)} FROM provider_inventory")
    names = [d.name for d in cursor.description]
    return {r[0]: dict(zip(names[1:], r[1:], strict=True)) for r in cursor.fetchall()}


FREE_COLUMNS = ("node_count", "total_available_cpu", "total_available_memory",
                "total_available_gpu", "total_available_ephemeral", "total_available_persistent",
                "max_node_free_cpu", "max_node_free_memory", "max_node_free_gpu",
                "gpu_models_free", "gpu_node_tokens_free", "storage_classes",
                "total_available_leased_ip")


@pytest.mark.slow
@SLOW
@given(seed=st.integers(0, 2**32), providers=st.integers(1, 6), events=st.integers(20, 300),
       batch=st.integers(1, 80))
def test_prefilter_totals_agree_with_the_bin_packers_nodes(
        database_url: str, seed: int, providers: int, events: int, batch: int) -> None:
    records = [Record("t", 0, i, codec.encode(t, d))
               for i, (t, d) in enumerate(history(seed, providers, events))]
    with fresh_schema(database_url) as schema, connect(database_url, schema) as conn:
        writer = Writer(conn, timedelta(hours=6))
        for start in range(0, len(records), batch):
            writer.apply(records[start:start + batch], {})
        stored = _inventory(conn)
        ids = sorted(stored)
        nodes = inventories(conn.execute(*repository.compiled(
            repository.inventory_statement(ids))).fetchall())
        assert stored, "the history made no providers"
        assert nodes == _view_inventory(conn, ids)
        for provider, row in stored.items():
            assert provider_totals(nodes[provider]) == row


def _view_inventory(conn: Any, ids: list[str]) -> dict[str, ProviderNodes]:
    """The providers' `ProviderNodes` read straight from the node_free / node_gpus views, each
    figure on its own (the definition provider_nodes must equal)."""
    gpus: dict[tuple[str, str], list[GpuGroup]] = {}
    for provider, node, vendor, model, vram, interface, slots in conn.execute(
            "SELECT provider_id, node_id, vendor, model, vram_bytes, interface, "
            "array_agg(slot_index ORDER BY slot_index) FROM node_gpus "
            "WHERE provider_id = ANY(%s) AND free "
            "GROUP BY provider_id, node_id, vendor, model, vram_bytes, interface "
            "ORDER BY provider_id, node_id, min(slot_index)", (ids,)):
        gpus.setdefault((provider, node), []).append(
            GpuGroup(vendor, model, vram, interface, tuple(slots)))
    found: dict[str, list[NodeInventory]] = {p: [] for p in ids}
    pools: dict[str, dict[str, int]] = {p: {} for p in ids}
    for provider, node, cpu, memory, ephemeral, storage in conn.execute(
            "SELECT provider_id, node_id, cpu, memory, ephemeral, storage FROM node_free "
            "WHERE provider_id = ANY(%s) ORDER BY provider_id, node_id", (ids,)):
        found[provider].append(NodeInventory(node, cpu, memory, ephemeral,
                                             tuple(gpus.get((provider, node), ()))))
        for volume in storage:
            pool = pools[provider]
            pool[volume["class"]] = min(INT64_MAX, pool.get(volume["class"], 0) + volume["bytes"])
    gates = {p: (ips, window) for p, ips, window in conn.execute(
        "SELECT provider_id, total_available_leased_ip, reclamation_window "
        "FROM provider_inventory WHERE provider_id = ANY(%s)", (ids,))}
    return {p: ProviderNodes(p, tuple(found[p]), pools[p], *gates[p]) for p in ids}


def test_the_table_metadata_is_the_migrated_schema(database_url: str) -> None:
    with fresh_schema(database_url) as schema, connect(database_url, schema) as conn:
        for table in tables.metadata.sorted_tables:
            found = conn.execute(
                "SELECT column_name, format_type(a.atttypid, a.atttypmod), is_nullable = 'YES' "
                "FROM information_schema.columns c JOIN pg_attribute a "
                "ON a.attrelid = format('%%I.%%I', c.table_schema, c.table_name)::regclass "
                "AND a.attname = c.column_name WHERE table_schema = %s AND table_name = %s "
                "ORDER BY ordinal_position", (schema, table.name)).fetchall()
            expected = [(c.name, tables.sql_type(c), c.nullable) for c in table.columns]
            assert found == expected, table.name


def test_an_auditor_does_not_revive_a_silent_provider(database_url: str) -> None:
    s = f.snapshot(minutes=0)
    audit = f.provider_audited(minutes=3 * 24 * 60, attributes={"tier": "gold"})
    with fresh_schema(database_url) as schema, connect(database_url, schema) as conn:
        writer = Writer(conn, timedelta(hours=6))
        for i, (kind, data) in enumerate((("HardwareSnapshotted", s),
                                          ("ProviderAudited", audit))):
            writer.apply([Record("t", 0, i, codec.encode(kind, data))], {})
        assert conn.execute("SELECT last_seen_at, audited_by FROM provider_inventory"
                            ).fetchall() == [(f.at(0), ["akash1auditor"])]
