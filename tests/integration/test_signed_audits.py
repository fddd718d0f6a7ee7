"""Signed audits end to end: `hwledger auditor keygen`, `hwledger provider audit --key-file`
through the broker, `hwledger project` verifying with HWLEDGER_AUDITOR_KEYS, the provider's
auditedBy over HTTP, and forged or unsigned audits dead-lettered with their raw bytes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hwledger.deploy.cli import main
from hwledger.schemas import codec
from hwledger.schemas.signatures import sign_audit
from tests import factories as f
from tests.integration.query_support import client, publish

AUDITOR = "akash1auditor"


@pytest.mark.slow
def test_only_audits_signed_by_a_configured_key_count(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        database_url: str, db_schema: str, db: psycopg.Connection[Any], topic: str,
        kafka_config: dict[str, Any]) -> None:
    key_file = tmp_path / "auditor.pem"
    assert main(["auditor", "keygen", "--key-file", str(key_file)]) == 0
    public_key = capsys.readouterr().out.strip()
    keys = tmp_path / "auditor-keys.json"
    keys.write_text(json.dumps({AUDITOR: [public_key]}))
    for name, value in (("HWLEDGER_HOME", str(tmp_path / "home")), ("HWLEDGER_TOPIC", topic),
                        ("HWLEDGER_KAFKA_BOOTSTRAP", kafka_config["bootstrap.servers"]),
                        ("HWLEDGER_DATABASE_URL", database_url),
                        ("HWLEDGER_DB_SCHEMA", db_schema), ("HWLEDGER_METRICS_PORT", "0")):
        monkeypatch.setenv(name, value)

    providers = ("provider-signed", "provider-forged", "provider-unsigned")
    publish(kafka_config, topic, [("ProviderRegistered", f.provider_registered(p))
                                  for p in providers])
    assert main(["provider", "audit", "--provider", "provider-signed", "--auditor", AUDITOR,
                 "--key-file", str(key_file), "--attr", "tier=gold"]) == 0
    forged = sign_audit(f.provider_audited("provider-forged", AUDITOR),
                        Ed25519PrivateKey.generate())
    unsigned = f.provider_audited("provider-unsigned", AUDITOR)
    publish(kafka_config, topic, [("ProviderAudited", forged), ("ProviderAudited", unsigned)])

    monkeypatch.setenv("HWLEDGER_AUDITOR_KEYS", str(keys))
    assert main(["project", "--group", f"g-{uuid.uuid4().hex[:8]}", "--until-caught-up"]) == 0

    dead = db.execute("SELECT event_id, raw, reason FROM dead_letters ORDER BY event_id"
                      ).fetchall()
    expected = sorted([(forged, "signature does not verify with any of the 1 key(s)"),
                       (unsigned, "unsigned audit")], key=lambda item: item[0]["event_id"])
    assert [(row[0], bytes(row[1])) for row in dead] == [
        (data["event_id"], codec.encode("ProviderAudited", data)) for data, _ in expected]
    assert all(reason in row[2] for row, (_, reason) in zip(dead, expected, strict=True))
    with client(database_url, db_schema, f.at(10)) as http:
        signed = http.get("/v1/providers/provider-signed").json()
        assert signed["auditedBy"] == [AUDITOR]
        assert signed["signedAttributes"] == {AUDITOR: {"tier": "gold"}}
        for provider in providers[1:]:
            assert http.get(f"/v1/providers/{provider}").json()["auditedBy"] == []


def test_an_unreadable_key_file_stops_the_projector_with_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        database_url: str, db_schema: str, topic: str, kafka_config: dict[str, Any]) -> None:
    keys = tmp_path / "auditor-keys.json"
    keys.write_text(json.dumps({AUDITOR: ["not base64!"]}))
    for name, value in (("HWLEDGER_DATABASE_URL", database_url), ("HWLEDGER_TOPIC", topic),
                        ("HWLEDGER_KAFKA_BOOTSTRAP", kafka_config["bootstrap.servers"]),
                        ("HWLEDGER_HOME", str(tmp_path / "home")),
                        ("HWLEDGER_DB_SCHEMA", db_schema), ("HWLEDGER_AUDITOR_KEYS", str(keys))):
        monkeypatch.setenv(name, value)
    assert main(["project", "--until-caught-up"]) == 2
    assert "HWLEDGER_AUDITOR_KEYS" in capsys.readouterr().err
