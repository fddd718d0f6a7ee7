"""`hwledger status` logic: lag arithmetic, the health URL, rows and exit code per failure."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hwledger.deploy.config import Settings
from hwledger.deploy.status import (
    BrokerState,
    QueryHealth,
    ReadModelState,
    Row,
    StatusReport,
    Unreachable,
    exit_code,
    health_url,
    partition_lag,
    rows,
)
from hwledger.deploy.status_gather import gather_read_model, status_database

BROKER = BrokerState("kafka:9092", "hwledger.events", {0: (0, 10), 1: (0, 4), 2: (5, 5)})
READ_MODEL = ReadModelState(
    database="postgresql://hw:***@db/hwledger", active_schema="hwledger", schema="hwledger",
    projection="live", next_offsets={0: 7, 1: 4}, dead_letters=0, parked_events=0,
    last_event_at=datetime(2026, 11, 22, 6, 0, tzinfo=UTC))
HEALTHY = QueryHealth("http://127.0.0.1:8080/healthz", 200)


def row(report: StatusReport, part: str) -> Row:
    [found] = [r for r in rows(report) if r.part == part]
    return found


def test_lag_is_high_watermark_minus_next_offset() -> None:
    assert partition_lag({0: (0, 10), 1: (0, 4)}, {0: 7, 1: 4}) == {0: 3, 1: 0}


def test_partition_without_stored_offset_counts_from_low_watermark() -> None:
    assert partition_lag({0: (0, 10), 1: (6, 9)}, {}) == {0: 10, 1: 3}


def test_offset_below_low_watermark_or_past_high_never_gives_negative_or_inflated_lag() -> None:
    assert partition_lag({0: (5, 9), 1: (0, 3)}, {0: 2, 1: 8}) == {0: 4, 1: 0}


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1", "http://127.0.0.1:8080/healthz"),
    ("0.0.0.0", "http://127.0.0.1:8080/healthz"),
    ("", "http://127.0.0.1:8080/healthz"),
    ("::", "http://[::1]:8080/healthz"),
    ("fd00::5", "http://[fd00::5]:8080/healthz"),
    ("query.internal", "http://query.internal:8080/healthz"),
])
def test_health_url_asks_a_wildcard_bind_on_loopback(host: str, url: str) -> None:
    assert health_url(host, 8080) == url


def test_everything_reachable_exits_0_and_lists_lag_per_partition() -> None:
    report = StatusReport(BROKER, READ_MODEL, HEALTHY)
    assert exit_code(report) == 0
    assert row(report, "broker").detail == "kafka:9092, topic hwledger.events: 3 partitions"
    assert row(report, "projector lag").detail == "3 events behind (projection 'live')"
    assert [r.detail for r in rows(report) if r.part.startswith("  partition")] == [
        "lag 3 (next offset 7, high watermark 10)",
        "lag 0 (next offset 4, high watermark 4)",
        "lag 0 (no offset stored, high watermark 5)",
    ]
    assert row(report, "last event").detail == "2026-11-22T06:00:00+00:00"
    assert row(report, "active schema").detail == "hwledger"
    assert row(report, "query service").state == "ok"
    assert {r.state for r in rows(report)} == {"ok"}


def test_dead_letters_and_parked_events_warn_without_failing() -> None:
    read_model = replace(READ_MODEL, dead_letters=2, parked_events=5)
    report = StatusReport(BROKER, read_model, HEALTHY)
    assert (row(report, "dead letters").state, row(report, "dead letters").detail) == ("warn", "2")
    assert row(report, "parked events").state == "warn"
    assert exit_code(report) == 0


def test_last_event_without_a_time_says_why() -> None:
    fresh = replace(READ_MODEL, next_offsets={}, last_event_at=None)
    assert row(StatusReport(BROKER, fresh, HEALTHY), "last event").detail == "none yet"
    untimed = replace(READ_MODEL, last_event_at=None)
    assert row(StatusReport(BROKER, untimed, HEALTHY), "last event").detail == \
        "not recorded by the projector"


def test_status_reading_another_schema_than_the_active_one_says_so() -> None:
    read_model = replace(READ_MODEL, schema="hwledger_v2")
    report = StatusReport(BROKER, read_model, HEALTHY)
    assert row(report, "active schema").detail == "hwledger (this status reads hwledger_v2)"


def test_unreachable_broker_is_one_readable_line_and_exit_3() -> None:
    report = StatusReport(Unreachable("no Kafka broker answered at kafka:9092"), READ_MODEL,
                          HEALTHY)
    assert row(report, "broker") == Row("broker", "down",
                                        "unreachable: no Kafka broker answered at kafka:9092")
    assert row(report, "projector lag").detail == "unreachable: the broker is down (see above)"
    assert row(report, "dead letters").state == "ok"
    assert exit_code(report) == 3


def test_unreachable_database_degrades_every_part_it_feeds() -> None:
    report = StatusReport(BROKER, Unreachable("cannot connect to PostgreSQL"), HEALTHY)
    assert row(report, "database").detail == "unreachable: cannot connect to PostgreSQL"
    for part in ("projector lag", "dead letters", "parked events", "last event",
                 "active schema"):
        assert row(report, part) == Row(part, "down",
                                        "unreachable: the database is down (see above)")
    assert row(report, "broker").state == "ok"
    assert exit_code(report) == 3


def test_unhealthy_or_unreachable_query_service_exits_3() -> None:
    unhealthy = StatusReport(BROKER, READ_MODEL, QueryHealth("http://q:8080/healthz", 503))
    assert row(unhealthy, "query service").detail == "unhealthy: http://q:8080/healthz: HTTP 503"
    assert exit_code(unhealthy) == 3
    refused = StatusReport(BROKER, READ_MODEL, Unreachable("http://q:8080/healthz: refused"))
    assert row(refused, "query service").detail == "unreachable: http://q:8080/healthz: refused"
    assert exit_code(refused) == 3


def test_no_database_configured_is_unreachable_not_an_error(tmp_path: Path) -> None:
    settings = Settings.from_env({"HWLEDGER_HOME": str(tmp_path)})
    found = gather_read_model(settings)
    assert isinstance(found, Unreachable) and "HWLEDGER_DATABASE_URL" in found.reason


def test_status_reads_the_query_database_when_no_read_write_one_is_set(tmp_path: Path) -> None:
    both = Settings.from_env({"HWLEDGER_HOME": str(tmp_path), "HWLEDGER_DATABASE_URL": "postgresql://h/rw",
                              "HWLEDGER_QUERY_DATABASE_URL": "postgresql://h/ro"})
    assert status_database(both) == ("postgresql://h/rw", "HWLEDGER_DATABASE_URL")
    query_only = Settings.from_env({"HWLEDGER_HOME": str(tmp_path),
                                    "HWLEDGER_QUERY_DATABASE_URL": "postgresql://h/ro"})
    assert status_database(query_only) == ("postgresql://h/ro", "HWLEDGER_QUERY_DATABASE_URL")
