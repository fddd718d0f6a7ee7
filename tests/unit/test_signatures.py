"""Signed audits: the canonical bytes, signing and verification, the auditor key file, and
the projection dead-lettering what does not prove its auditor."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hwledger.deploy.cli import main
from hwledger.projectors.plan import Plan, Record, State, decode_all
from hwledger.projectors.projection import project
from hwledger.schemas import codec
from hwledger.schemas.errors import ConfigError
from hwledger.schemas.registry import all_versions
from hwledger.schemas.signatures import (
    DOMAIN,
    EPOCH,
    audit_problem,
    canonical_audit,
    parse_auditor_keys,
    public_key_text,
    read_private_key,
    sign_audit,
)
from tests import factories as f

AUDITOR = "akash1auditor"


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return base64.b64decode(public_key_text(key))


def test_canonical_bytes_are_length_prefixed_fields_in_a_fixed_order() -> None:
    data = {"event_id": "e", "provider_id": "pé", "auditor": "a",
            "occurred_at": EPOCH + timedelta(seconds=1.5), "producer": f.PRODUCER,
            "attributes": [{"key": "k", "value": "v"}]}
    assert canonical_audit(data) == (
        DOMAIN + b"\0\0\0\x01e" + b"\0\0\0\x03p\xc3\xa9" + b"\0\0\0\x01a"
        + (1500).to_bytes(8, "big") + b"\0\0\0\x01" + b"\0\0\0\x01k" + b"\0\0\0\x01v")
    assert canonical_audit(data | {"producer": {"name": "other", "version": "9"}}) == (
        canonical_audit(data))


def test_a_signed_audit_verifies_and_any_change_breaks_it() -> None:
    key = Ed25519PrivateKey.generate()
    keys = {AUDITOR: (raw_public(key),)}
    signed = sign_audit(f.provider_audited(), key)
    assert audit_problem(signed, keys) is None
    changes: list[dict[str, Any]] = [
        {"provider_id": "provider-b"}, {"occurred_at": f.at(60)},
        {"attributes": [{"key": "tier", "value": "gold"}]}, {"event_id": f.event_id()},
        {"signature": signed["signature"][:-1]}]
    for change in changes:
        assert "does not verify" in str(audit_problem(signed | change, keys)), change
    assert "has no public key" in str(audit_problem(signed | {"auditor": "other"}, keys))


def test_rotation_accepts_every_listed_key_of_the_auditor_only() -> None:
    old, new, other = (Ed25519PrivateKey.generate() for _ in range(3))
    keys = {AUDITOR: (raw_public(old), raw_public(new)), "someone": (raw_public(other),)}
    audit = f.provider_audited()
    assert audit_problem(sign_audit(audit, old), keys) is None
    assert audit_problem(sign_audit(audit, new), keys) is None
    assert "any of the 2 key(s)" in str(audit_problem(sign_audit(audit, other), keys))
    assert "unsigned audit" in str(audit_problem(audit | {"signature": None}, keys))
    stranger = sign_audit(f.provider_audited(auditor="nobody"), other)
    assert "'nobody' has no public key" in str(audit_problem(stranger, keys))


def test_the_key_file_takes_base64_and_pem_keys_and_names_bad_entries() -> None:
    a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    pem = b.public_key().public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    keys = parse_auditor_keys(json.dumps({AUDITOR: [public_key_text(a), pem]}), "keys.json")
    assert keys == {AUDITOR: (raw_public(a), raw_public(b))}
    for text, message in (
            ("{", "not JSON"), ("[]", "expected"), (json.dumps({AUDITOR: []}), "non-empty"),
            (json.dumps({AUDITOR: "abc"}), "non-empty list"),
            (json.dumps({AUDITOR: ["!!"]}), "neither base64 nor PEM"),
            (json.dumps({AUDITOR: [base64.b64encode(b"x" * 31).decode()]}), "this one 31"),
            (json.dumps({AUDITOR: ["-----BEGIN PUBLIC KEY-----\nAAAA"]}), "not a PEM")):
        with pytest.raises(ConfigError, match=message):
            parse_auditor_keys(text, "keys.json")


def test_the_signature_travels_in_provider_audited_v2_and_v1_reads_as_unsigned() -> None:
    key = Ed25519PrivateKey.generate()
    signed = sign_audit(f.provider_audited(), key)
    assert codec.decode(codec.encode("ProviderAudited", signed)).data == signed
    v1 = next(s for s in all_versions() if (s.event_type, s.version) == ("ProviderAudited", 1))
    body = codec.encode("ProviderAudited", signed | {"signature": None})[codec.HEADER_LEN:-1]
    old = codec.decode(codec.MARKER + v1.fingerprint + body)
    assert old.data["signature"] is None and old.data["auditor"] == AUDITOR


def project_audits(*audits: dict[str, Any], keys: dict[str, tuple[bytes, ...]] | None) -> Plan:
    batch = decode_all(Record("t", 0, i, codec.encode("ProviderAudited", a))
                       for i, a in enumerate(audits))
    return project(batch, State(), timedelta(hours=1), auditor_keys=keys)


def test_with_keys_only_proven_audits_project_and_the_rest_are_dead_letters() -> None:
    key, forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    good = sign_audit(f.provider_audited("provider-a"), key)
    forged = sign_audit(f.provider_audited("provider-b"), forger)
    unsigned = f.provider_audited("provider-c")
    plan = project_audits(good, forged, unsigned, keys={AUDITOR: (raw_public(key),)})
    assert set(plan.audits) == {("provider-a", AUDITOR)}
    assert [(d.record.offset, d.event_type) for d in plan.dead_letters] == [
        (1, "ProviderAudited"), (2, "ProviderAudited")]
    assert "does not verify" in plan.dead_letters[0].reason
    assert "unsigned audit" in plan.dead_letters[1].reason
    unverified = project_audits(good, forged, unsigned, keys=None)
    assert len(unverified.audits) == 3 and unverified.dead_letters == []


def test_keygen_writes_a_private_key_once_and_prints_its_public_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "auditor.pem"
    assert main(["auditor", "keygen", "--key-file", str(path)]) == 0
    printed = capsys.readouterr().out.strip()
    assert path.stat().st_mode & 0o777 == 0o600
    assert public_key_text(read_private_key(path)) == printed
    assert main(["auditor", "keygen", "--key-file", str(path)]) == 1
    assert "exists" in capsys.readouterr().err


def test_audit_with_a_bad_key_file_is_a_one_line_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    for path in (bad, tmp_path / "missing.pem"):
        assert main(["provider", "audit", "--auditor", AUDITOR, "--provider", "p",
                     "--key-file", str(path)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("hwledger: error: ") and err.count("\n") == 1
