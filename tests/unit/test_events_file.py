"""`hwledger publish --events`: the whole file is checked first, every error with its line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hwledger.deploy.cli import main
from hwledger.producers.events_file import parse_time, read_events
from hwledger.schemas import codec
from tests import factories as f


def line(event_type: str, data: dict[str, Any]) -> bytes:
    return json.dumps({"type": event_type, "data": data}, default=lambda d: d.isoformat()
                      ).encode()


def good_lines() -> list[bytes]:
    snap = f.snapshot(seed="s1")
    started = f.run_started(snap, seed="r1")
    return [line("HardwareSnapshotted", snap), line("RunStarted", started),
            line("RunFinished", f.run_finished(started, seed="f1")),
            line("ProviderRegistered", f.provider_registered(seed="p1")),
            line("ProviderAudited", f.provider_audited(seed="a1"))]


def test_a_good_file_gives_encoded_events_in_file_order() -> None:
    events, errors = read_events(b"\n".join(good_lines()) + b"\n\n")
    assert errors == []
    assert [e.event_type for e in events] == ["HardwareSnapshotted", "RunStarted",
                                              "RunFinished", "ProviderRegistered",
                                              "ProviderAudited"]
    decoded = codec.decode(events[0].value)
    assert decoded.data == f.snapshot(seed="s1")
    assert events[0].provider_id == "provider-a"


def test_event_id_and_producer_are_filled_in_and_ids_are_stable() -> None:
    data = f.provider_registered()
    del data["event_id"], data["producer"]
    data["occurred_at"] = 1_793_534_400_000
    raw = json.dumps({"type": "ProviderRegistered", "data": data}).encode()
    (first,), _ = read_events(raw)
    (again,), _ = read_events(raw)
    assert first.event_id == again.event_id
    decoded = codec.decode(first.value).data
    assert decoded["producer"]["name"] == "hwledger"
    assert decoded["occurred_at"] == datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_times_iso_or_epoch_millis() -> None:
    assert parse_time("2026-11-01T12:00:00Z") == datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert parse_time(1_793_534_400_000) == datetime(2026, 11, 1, 12, tzinfo=UTC)
    for bad in ("2026-11-01T12:00:00", "yesterday", True, 1.5):
        with pytest.raises(ValueError, match="occurred_at"):
            parse_time(bad)


def bad_file() -> bytes:
    snap = f.snapshot()
    negative = f.snapshot(allocatable={**snap["allocatable"], "memory_bytes": -2})
    duplicate = f.snapshot(gpus=[f.gpu(0), f.gpu(0)])
    mistyped = f.snapshot(system={**snap["system"], "cpu_cores": "ninety-six"})
    missing = f.provider_registered()
    del missing["host_uri"]
    return b"\n".join([
        good_lines()[0],                                  # 1 fine
        b'{"type": "ProviderRegistered", "data": {',      # 2 malformed JSON
        line("GpuMelted", {"provider_id": "p"}),          # 3 unknown type
        line("ProviderRegistered", missing),              # 4 missing field
        line("HardwareSnapshotted", mistyped),            # 5 mistyped field
        line("HardwareSnapshotted", negative),            # 6 negative bytes
        line("HardwareSnapshotted", duplicate),           # 7 duplicate slots
        b'{"type": "ProviderAudited", "data": "\xff\xfe"}',  # 8 not UTF-8
        b"",                                              # 9 blank: skipped
        b"[1, 2]",                                        # 10 not an object
    ])


def test_every_error_is_reported_with_its_line_number() -> None:
    events, errors = read_events(bad_file())
    assert len(events) == 1
    by_line = {e.line: e.message for e in errors}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8, 10]
    assert "malformed JSON" in by_line[2]
    assert "unknown event type 'GpuMelted'" in by_line[3]
    assert "host_uri" in by_line[4]
    assert "cpu_cores" in by_line[5]
    assert "memory_bytes must not be negative" in by_line[6]
    assert "duplicate slot_index 0" in by_line[7]
    assert "not UTF-8" in by_line[8]
    assert "exactly" in by_line[10]


def test_cli_exits_2_lists_errors_and_spools_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HWLEDGER_HOME", str(home))
    monkeypatch.setenv("HWLEDGER_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    path = tmp_path / "events.jsonl"
    path.write_bytes(bad_file())
    assert main(["publish", "--events", str(path)]) == 2
    err = capsys.readouterr().err
    for number in (2, 3, 4, 5, 6, 7, 8, 10):
        assert f"{path}:line {number}:" in err
    assert "8 problem(s)" in err and "nothing published" in err
    assert not (home / "spool").exists()


def test_cli_unreadable_file_is_a_one_line_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HWLEDGER_HOME", str(tmp_path))
    assert main(["publish", "--events", str(tmp_path / "missing.jsonl")]) == 1
    assert capsys.readouterr().err.startswith("hwledger: error: cannot read")
