"""Ed25519 signatures of ProviderAudited: an audit proves which auditor signed it.

The signed message (`canonical_audit`) is language-neutral bytes: the domain tag
`hwledger.ProviderAudited.v1` and a NUL byte, then `event_id`, `provider_id` and `auditor`, each
as a 4-byte big-endian length and its UTF-8 bytes, `occurred_at` as 8-byte big-endian signed
milliseconds since the Unix epoch (what Avro's timestamp-millis keeps), the attribute count as
4 bytes, and each attribute's key and value as length + UTF-8, in event order. The producer
record and the signature itself are not signed.

Auditor keys (`HWLEDGER_AUDITOR_KEYS`, docs/operations.md) are a JSON file
`{"<auditor>": ["<public key>", ...]}`: each key the base64 of its 32 raw bytes or a PEM public
key; several keys per auditor allow rotation. A private key is a PEM (PKCS#8) file.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hwledger.schemas.errors import ConfigError, UserError

DOMAIN = b"hwledger.ProviderAudited.v1\x00"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
AUDITOR_KEYS_SETTING = "HWLEDGER_AUDITOR_KEYS"

AuditorKeys = Mapping[str, tuple[bytes, ...]]
"""auditor -> the raw 32-byte Ed25519 public keys whose signatures count for it."""


def _text(value: str) -> bytes:
    raw = value.encode("utf-8", "surrogatepass")
    return struct.pack(">I", len(raw)) + raw


def canonical_audit(data: Mapping[str, Any]) -> bytes:
    """The bytes an auditor signs for the ProviderAudited `data` (module docstring)."""
    millis = (data["occurred_at"] - EPOCH) // timedelta(milliseconds=1)
    parts = [DOMAIN, _text(str(data["event_id"])), _text(str(data["provider_id"])),
             _text(str(data["auditor"])), struct.pack(">q", millis),
             struct.pack(">I", len(data["attributes"]))]
    for attribute in data["attributes"]:
        parts += [_text(str(attribute["key"])), _text(str(attribute["value"]))]
    return b"".join(parts)


def sign_audit(data: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """`data` (complete: event_id and occurred_at set) with its `signature`."""
    return {**data, "signature": key.sign(canonical_audit(data))}


def audit_problem(data: Mapping[str, Any], keys: AuditorKeys) -> str | None:
    """Why the audit `data` does not prove that its auditor signed it; None when it does."""
    auditor = str(data["auditor"])
    known = keys.get(auditor, ())
    if not known:
        return f"auditor {auditor!r} has no public key in {AUDITOR_KEYS_SETTING}"
    signature = data.get("signature")
    if signature is None:
        return f"unsigned audit by {auditor!r} (auditor keys are configured)"
    message = canonical_audit(data)
    for raw in known:
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)
        except InvalidSignature:
            continue
        return None
    return f"signature does not verify with any of the {len(known)} key(s) of auditor {auditor!r}"


def _public_key(text: str, where: str) -> bytes:
    if text.lstrip().startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigError(f"{where}: not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"{where}: not an Ed25519 public key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: neither base64 nor PEM") from None
    if len(raw) != 32:
        raise ConfigError(f"{where}: an Ed25519 public key has 32 bytes, this one {len(raw)}")
    return raw


def parse_auditor_keys(text: str, source: str) -> dict[str, tuple[bytes, ...]]:
    """The auditor keys of a key file's text; ConfigError names the first problem."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ConfigError(f'{source}: expected {{"<auditor>": ["<public key>", ...]}}')
    keys: dict[str, tuple[bytes, ...]] = {}
    for auditor, listed in document.items():
        if not isinstance(listed, list) or not listed or not all(
                isinstance(k, str) for k in listed):
            raise ConfigError(f"{source}: {auditor!r} needs a non-empty list of key strings")
        keys[auditor] = tuple(_public_key(k, f"{source}: {auditor!r} key {i + 1}")
                              for i, k in enumerate(listed))
    return keys


def load_auditor_keys(path: Path) -> dict[str, tuple[bytes, ...]]:
    """The auditor keys of the file at `path`."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{AUDITOR_KEYS_SETTING}={path}: cannot read it ({exc})") from None
    return parse_auditor_keys(text, f"{AUDITOR_KEYS_SETTING}={path}")


def public_key_text(key: Ed25519PrivateKey) -> str:
    """The base64 public key of `key`, as the auditor key file lists it."""
    return base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def write_private_key(path: Path) -> Ed25519PrivateKey:
    """A new private key in a new file at `path` (mode 0600; an existing file is refused)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UserError(f"{path} exists; a new key needs a new file") from None
    except OSError as exc:
        raise UserError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return key


def read_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key of the PEM file at `path`."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise UserError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"{path} is not an Ed25519 private key")
    return key
