"""Foundation against real servers: migrations, seeds, and one event end to end."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, Producer

from hwledger.schemas import codec
from hwledger.schemas.db import connect, use_schema
from hwledger.schemas.errors import UserError
from hwledger.schemas.migrations import current_version, migrate, migrations
from hwledger.seeds.seeding import seed_database
from tests import factories as f

CATALOG_DUMP = """
SELECT table_name, column_name, data_type, is_nullable, column_default
FROM information_schema.columns WHERE table_schema = %(s)s
UNION ALL
SELECT conname, pg_get_constraintdef(c.oid), '', '', ''
FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = %(s)s
UNION ALL
SELECT indexname, indexdef, '', '', '' FROM pg_indexes WHERE schemaname = %(s)s
ORDER BY 1, 2
"""


def catalog(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    return conn.execute(CATALOG_DUMP, {"s": schema}).fetchall()


def test_migrations_applied_twice_change_nothing(database_url: str) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with connect(database_url, None) as conn:
        assert [m.version for m in migrate(conn, schema)] == [m.version for m in migrations()]
        before = catalog(conn, schema)
        assert migrate(conn, schema) == []
        assert catalog(conn, schema) == before
        assert current_version(conn, schema) == migrations()[-1].version
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.commit()


def test_every_design_table_exists_with_gin_indexes(db: psycopg.Connection[Any],
                                                     db_schema: str) -> None:
    tables = {r[0] for r in db.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
        (db_schema,))}
    assert {"interface_type", "gpu_hardware", "system_hardware", "system_gpu_link",
            "system_software", "hardware_snapshots", "runs", "run_gpu_usage",
            "run_hardware_metrics", "nodes", "providers", "provider_audits",
            "provider_inventory", "dead_letters", "projection_offsets"} <= tables
    gin = {r[0] for r in db.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexdef LIKE '%%gin%%'",
        (db_schema,))}
    for column in ("gpu_models_free", "gpu_models", "audited_by", "storage_classes",
                   "self_attributes"):
        assert any(f"({column}" in d for d in gin), column
    fk = db.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = "
        "'run_hardware_metrics'::regclass AND contype = 'f'").fetchall()
    assert any("(system_hardware_id, slot_index) REFERENCES system_gpu_link" in r[0] for r in fk)


def test_check_constraints_reject_impossible_values(db: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("INSERT INTO gpu_hardware VALUES (gen_random_uuid(), 'nvidia', 'h100', 'x', "
                   "'10de', '2330', NULL, -1, 'pcie')")
    db.rollback()


def test_seeds_loaded_twice_change_nothing(db: psycopg.Connection[Any]) -> None:
    before = db.execute("SELECT * FROM interface_type ORDER BY 1").fetchall()
    assert seed_database(db) == 0
    assert db.execute("SELECT * FROM interface_type ORDER BY 1").fetchall() == before
    assert len(before) >= 30


def test_migrating_a_newer_database_is_refused(database_url: str, db_schema: str) -> None:
    with connect(database_url, db_schema) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, 'future')")
        conn.commit()
        with pytest.raises(UserError, match="newer than this hwledger knows"):
            migrate(conn, db_schema)


def test_one_event_through_the_broker_into_one_row(
        kafka_config: dict[str, Any], topic: str, db: psycopg.Connection[Any]) -> None:
    data = f.provider_registered("provider-roundtrip")
    producer = Producer(kafka_config | {"enable.idempotence": True, "acks": "all"})
    producer.produce(topic, key=data["provider_id"].encode(),
                     value=codec.encode("ProviderRegistered", data))
    assert producer.flush(10) == 0
    consumer = Consumer(kafka_config | {"group.id": f"g-{uuid.uuid4()}",
                                        "auto.offset.reset": "earliest",
                                        "session.timeout.ms": 6000})
    consumer.subscribe([topic])
    try:
        message = None
        for _ in range(60):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.error() is None
        event = codec.decode(message.value() or b"")
    finally:
        consumer.close()
    assert event.type == "ProviderRegistered" and event.data == data
    use_schema(db, db.execute("SELECT current_schema()").fetchone()[0])  # type: ignore[index]
    db.execute("INSERT INTO providers (provider_id, host_uri, registered_at, event_id) "
               "VALUES (%s, %s, %s, %s)",
               (event.data["provider_id"], event.data["host_uri"], event.data["occurred_at"],
                event.data["event_id"]))
    db.commit()
    row = db.execute("SELECT host_uri FROM providers WHERE provider_id = %s",
                     ("provider-roundtrip",)).fetchone()
    assert row == (data["host_uri"],)
