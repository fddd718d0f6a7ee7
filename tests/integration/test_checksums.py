"""Checksums that scale: order-independent, sensitive to any change, and past the 1 GB value
limit that one text of every row (the former `md5(string_agg(...))`) runs into."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from hwledger.projectors.checksums import table_checksum
from hwledger.schemas.db import connect
from tests.integration.projector_support import fresh_schema


def test_equal_rows_in_any_order_give_equal_checksums_and_a_change_shows(
        database_url: str) -> None:
    with fresh_schema(database_url) as schema, connect(database_url, schema) as conn:
        conn.execute("CREATE TABLE a (k int, v text)")
        conn.execute("CREATE TABLE b (k int, v text)")
        conn.execute("INSERT INTO a SELECT g, md5(g::text) FROM generate_series(1, 500) g")
        conn.execute("INSERT INTO b SELECT g, md5(g::text) FROM generate_series(500, 1, -1) g")
        assert table_checksum(conn, "a") == table_checksum(conn, "b")
        conn.execute("UPDATE b SET v = v || 'x' WHERE k = 250")
        assert table_checksum(conn, "a") != table_checksum(conn, "b")
        conn.execute("UPDATE b SET v = md5(k::text) WHERE k = 250")
        conn.execute("INSERT INTO b SELECT k, v FROM b WHERE k = 1")  # a duplicate row counts
        assert table_checksum(conn, "a")[1] != table_checksum(conn, "b")[1]


@pytest.mark.slow
def test_a_table_past_the_one_gigabyte_value_limit(database_url: str) -> None:
    rows, width = 1100, 1_000_000  # 1.1 GB of row text, stored compressed
    with fresh_schema(database_url) as schema, connect(database_url, schema) as conn:
        conn.execute(sql.SQL("CREATE TABLE wide AS SELECT g, repeat(md5(g::text), {n}) AS v "
                             "FROM generate_series(1, {rows}) g").format(
            n=sql.Literal(width // 32), rows=sql.Literal(rows)))
        conn.commit()
        count, checksum = table_checksum(conn, "wide")
        assert count == rows and checksum != "0:0"
        with pytest.raises(psycopg.errors.ProgramLimitExceeded):
            conn.execute("SELECT md5(string_agg(t::text, E'\\n' ORDER BY t::text)) FROM wide t")
