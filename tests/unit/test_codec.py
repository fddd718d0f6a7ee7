"""Codec: single-object encoding round trips, schema resolution, typed errors for bad bytes."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import schemaless_writer

from hwledger.schemas import codec
from hwledger.schemas.identity import OPTIONAL_SYSTEM_IDENTITY
from hwledger.schemas.registry import EVENT_TYPES, all_versions, by_fingerprint, latest
from tests import factories as f


def sample_events() -> list[tuple[str, dict[str, Any]]]:
    snap = f.snapshot(gpus=[f.gpu(0, "h100-sxm"), f.gpu(1, "mi300x", power_limit_w=None)])
    started = f.run_started(snap, gpu_slots=[0, 1])
    return [
        ("HardwareSnapshotted", snap),
        ("HardwareSnapshotted", f.snapshot(gpus=[])),
        ("HardwareSnapshotted", f.host_identity_snapshot()),
        ("RunStarted", started),
        ("RunFinished", f.run_finished(started)),
        ("RunFinished", f.run_finished(started, "failed", error_message="CUDA OOM")),
        ("ProviderRegistered", f.provider_registered()),
        ("ProviderAudited", f.provider_audited(attributes={})),
    ]


@pytest.mark.parametrize(("event_type", "data"), sample_events())
def test_round_trip_every_event(event_type: str, data: dict[str, Any]) -> None:
    raw = codec.encode(event_type, data)
    assert raw[:2] == codec.MARKER
    assert raw[2:10] == latest(event_type).fingerprint
    decoded = codec.decode(raw)
    assert decoded.type == event_type
    assert decoded.data == data


def test_every_event_type_has_a_schema() -> None:
    assert {s.event_type for s in all_versions()} == set(EVENT_TYPES)


def old_run_finished() -> tuple[dict[str, Any], bytes]:
    """A RunFinished as version 1 wrote it (no error_message): its data and its bytes."""
    v1 = next(s for s in all_versions() if s.event_type == "RunFinished" and s.version == 1)
    data = f.run_finished(f.run_started(f.snapshot()))
    del data["error_message"]
    buf = io.BytesIO()
    schemaless_writer(buf, v1.parsed, data)
    return data, codec.MARKER + v1.fingerprint + buf.getvalue()


def test_old_writer_version_is_read_with_the_newest_reader() -> None:
    data, raw = old_run_finished()
    assert codec.decode(raw).data == data | {"error_message": None}


def test_a_version_1_snapshot_reads_without_host_identity_inputs() -> None:
    v1 = next(s for s in all_versions()
              if s.event_type == "HardwareSnapshotted" and s.version == 1)
    data = f.snapshot()
    written = {**data, "system": {k: v for k, v in data["system"].items()
                                  if k not in OPTIONAL_SYSTEM_IDENTITY}}
    buf = io.BytesIO()
    schemaless_writer(buf, v1.parsed, written)
    assert codec.decode(codec.MARKER + v1.fingerprint + buf.getvalue()).data == data


def test_fingerprints_are_unique_and_little_endian_crc64() -> None:
    assert len(by_fingerprint()) == len(all_versions())
    from hwledger.schemas.registry import fingerprint_of

    # CRC-64-AVRO of "null" from the Avro specification, little-endian.
    assert fingerprint_of("null") == (7195948357588979594).to_bytes(8, "little")  # type: ignore[arg-type,unused-ignore]


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "truncated"),
    (b"\xc3\x01\x00\x01", "truncated"),
    (b"{\"json\": true, \"not\": \"avro\"}", "not Avro single-object encoding"),
    (b"\xc3\x01" + b"\xff" * 8 + b"\x00", "unknown schema fingerprint"),
])
def test_bad_bytes_raise_decode_error_with_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(codec.DecodeError, match=reason):
        codec.decode(raw)


def test_truncated_and_padded_bodies_are_decode_errors() -> None:
    raw = codec.encode("ProviderRegistered", f.provider_registered())
    with pytest.raises(codec.DecodeError, match="corrupt ProviderRegistered"):
        codec.decode(raw[:-5])
    with pytest.raises(codec.DecodeError, match="trailing bytes"):
        codec.decode(raw + b"\x00")


def test_encode_rejects_payload_that_misses_fields() -> None:
    data = f.provider_registered()
    del data["host_uri"]
    with pytest.raises(codec.EncodeError, match="ProviderRegistered"):
        codec.encode("ProviderRegistered", data)


def test_snapshots_differing_only_in_their_envelope_share_their_decoded_content() -> None:
    gpus = [f.gpu(0, "h100-sxm"), f.gpu(1, "h100-sxm")]
    first = f.snapshot("provider-a", "node-1", gpus=gpus)
    second = f.snapshot("provider-b", "node-7", gpus=gpus, minutes=5)
    a, b = (codec.decode(codec.encode("HardwareSnapshotted", d)) for d in (first, second))
    assert (a.data, b.data) == (first, second)
    assert a.content is not None and a.content == b.content
    assert a.data["gpus"] is b.data["gpus"]  # decoded once
    other = codec.decode(codec.encode("HardwareSnapshotted", f.snapshot(gpus=gpus[:1])))
    assert other.content != a.content
    assert codec.decode(codec.encode("ProviderRegistered", f.provider_registered())).content \
        is None


def test_a_corrupt_snapshot_content_is_never_served_from_the_cache() -> None:
    raw = codec.encode("HardwareSnapshotted", f.snapshot(gpus=[f.gpu(0, "t4")], seed="c"))
    for _ in range(2):
        with pytest.raises(codec.DecodeError, match="trailing bytes"):
            codec.decode(raw + b"\x00")
        with pytest.raises(codec.DecodeError, match="corrupt HardwareSnapshotted"):
            codec.decode(raw[:-3])
    assert codec.decode(raw).data["gpus"][0]["model"] == "t4"


def test_the_content_of_an_old_writer_version_is_read_with_the_newest_reader(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "CONTENT_CACHED", frozenset({"RunFinished"}))
    data, raw = old_run_finished()
    decoded = codec.decode(raw)
    assert decoded.content is not None
    assert decoded.data == data | {"error_message": None}
