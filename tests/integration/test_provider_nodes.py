"""provider_nodes, the bin-packer's per-provider inventory (migration 0011), and the node tokens
of provider_inventory (migration 0012): the migrations fill them for the rows a schema already
holds exactly as the projector writes them."""

from __future__ import annotations

import uuid
from datetime import timedelta

from psycopg import sql

from hwledger.deploy.bench.fleet import history
from hwledger.projectors.plan import Record
from hwledger.projectors.writer import Writer
from hwledger.schemas import codec
from hwledger.schemas.db import connect
from hwledger.schemas.migrations import drop_schema, migrate
from tests.integration.projector_support import fresh_schema

INVENTORY_SOURCES = ("interface_type", "gpu_hardware", "system_hardware", "system_gpu_link",
                     "system_software", "hardware_snapshots", "nodes", "runs", "run_gpu_usage",
                     "providers", "provider_inventory")
"""The tables the inventory views and provider_inventory rows come from, with what they refer
to (copied with the columns they had at migration 0010)."""


def test_migrations_0011_and_0012_fill_nodes_and_node_tokens_as_the_projector_writes_them(
        database_url: str) -> None:
    records = [Record("t", 0, i, codec.encode(t, d))
               for i, (t, d) in enumerate(history(11, 4, 160))]
    older = f"m_{uuid.uuid4().hex[:12]}"
    with fresh_schema(database_url) as projected, connect(database_url, projected) as conn:
        writer = Writer(conn, timedelta(hours=6))
        for start in range(0, len(records), 25):
            writer.apply(records[start:start + 25], {})
        written = conn.execute(NODES).fetchall()
        written_tokens = conn.execute(NODE_TOKENS).fetchall()
        try:
            migrate(conn, older, target=10)
            conn.commit()
            for table in INVENTORY_SOURCES:
                columns = sql.SQL(", ").join(sql.Identifier(c) for c, in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                    "AND table_name = %s ORDER BY ordinal_position", (older, table)))
                conn.execute(sql.SQL("INSERT INTO {} SELECT {} FROM {} ON CONFLICT DO NOTHING"
                                     ).format(sql.Identifier(older, table), columns,
                                              sql.Identifier(projected, table)))
            conn.commit()
            with connect(database_url, older) as old:
                migrate(old, older)
                filled = old.execute(NODES).fetchall()
                filled_tokens = old.execute(NODE_TOKENS).fetchall()
        finally:
            drop_schema(database_url, older)
    assert len(written) == 4 and any(nodes for _, nodes, _ in written)
    assert any(gpu_groups for _, nodes, _ in written for *_, gpu_groups in nodes)
    assert filled == written
    assert any(t.endswith("#2") for _, tokens in written_tokens for t in tokens)
    assert filled_tokens == written_tokens


NODES = "SELECT * FROM provider_nodes ORDER BY provider_id"
NODE_TOKENS = "SELECT provider_id, gpu_node_tokens_free FROM provider_inventory ORDER BY 1"
