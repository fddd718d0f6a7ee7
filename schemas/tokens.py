"""GPU token rules, shared by the write side (provider_inventory) and the read side (requests).

A GPU is described by two tokens: its `vendor` ("nvidia") and `vendor/model` ("nvidia/h100"),
lowercased. Model tokens follow Akash naming: the PCI device id is looked up in the seed
catalog first; marketing names ("NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090") are reduced
by name rules when the id is unknown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hwledger.seeds import gpu_catalog

PCI_VENDORS = {"10de": "nvidia", "1002": "amd", "8086": "intel"}
_NAME_VENDORS = (
    ("nvidia", ("nvidia", "geforce", "tesla", "quadro", "titan")),
    ("amd", ("amd", "radeon", "instinct")),
    ("intel", ("intel", "arc")),
)
_VENDOR_WORDS = {"nvidia", "amd", "ati", "intel", "geforce", "tesla", "quadro", "instinct",
                 "radeon"}
_NOISE = re.compile(
    r"^(\d+(gb|g|gib)|sxm\d*|pcie|nvl|hbm\d*e?|generation|graphics|gpu|accelerator|oam|"
    r"data|center)$"
)
_JOINING_PREFIXES = {"rtx", "gtx", "rx", "titan", "arc", "gt", "max"}


@dataclass(frozen=True)
class GpuIdentity:
    """A GPU's vendor and model tokens."""

    vendor: str
    model: str


def normalize_pci_id(value: str | None, width: int = 4) -> str | None:
    """'0x10DE' -> '10de'; None stays None. Used for catalog lookups and identities."""
    if value is None:
        return None
    text = value.strip().lower().removeprefix("0x")
    return text.zfill(width) if text else None


def _words(name: str) -> list[str]:
    cleaned = name.lower().replace("(r)", " ").replace("(tm)", " ")
    return [w for w in re.split(r"[\s\-_/,]+", cleaned) if w]


def vendor_token(name: str, pci_vendor_id: str | None = None) -> str:
    """The vendor token from the PCI vendor id, else from words in the name."""
    by_id = PCI_VENDORS.get(normalize_pci_id(pci_vendor_id) or "")
    if by_id is not None:
        return by_id
    words = set(_words(name))
    for vendor, markers in _NAME_VENDORS:
        if words & set(markers):
            return vendor
    return (_words(name) or ["unknown"])[0]


def model_token_from_name(name: str) -> str:
    """Reduce a marketing name to an Akash-style model token by name rules alone."""
    words = [w for w in _words(name) if w not in _VENDOR_WORDS and not _NOISE.match(w)]
    if len(words) > 1 and words[0] == "pro":
        words = words[1:]
    if not words:
        return "unknown"
    if words[0] in _JOINING_PREFIXES:
        return "".join(words)
    return words[0]


def identify(name: str, pci_vendor_id: str | None = None,
             pci_device_id: str | None = None) -> GpuIdentity:
    """Vendor and model tokens: PCI catalog first, name rules as the fallback."""
    key = (normalize_pci_id(pci_vendor_id) or "", normalize_pci_id(pci_device_id) or "")
    entry = gpu_catalog().get(key)
    if entry is not None:
        return GpuIdentity(entry.vendor, entry.model)
    return GpuIdentity(vendor_token(name, pci_vendor_id), model_token_from_name(name))


def gpu_tokens(vendor: str, model: str) -> tuple[str, str]:
    """The two inventory tokens of one installed GPU: `vendor` and `vendor/model`."""
    v = vendor.strip().lower()
    return v, f"{v}/{model.strip().lower()}"


def request_token(vendor: str, model: str | None) -> str:
    """The token a request needs: `vendor` for a wildcard or absent model, else `vendor/model`."""
    v = vendor.strip().lower()
    if model is None or model.strip() in ("", "*"):
        return v
    return f"{v}/{model.strip().lower()}"


COUNT_STEPS = tuple(2**e for e in range(17))
"""The GPU counts a node token states (`node_token`): powers of two up to 65,536, so a provider
row holds four tokens per vendor, model or ram token for nodes of 8 GPUs (every count up to 8
made the rows twice as wide and the scans that read them up to 2x slower: docs/performance.md,
"Issue 15, fourth step"), and requests mostly ask for powers of two."""


def count_step(gpus: int) -> int:
    """The largest of COUNT_STEPS at most `gpus` (at least 1): the node token a replica of
    `gpus` GPUs needs, since a node with `gpus` free has every smaller step too."""
    return max((s for s in COUNT_STEPS if s <= gpus), default=1)


def ram_gib(ram_bytes: int) -> int:
    """GPU ram in whole GiB, halves rounded up: the one rounding of GPU ram, of requests and of
    free GPUs, here and in SQL (`(vram_bytes + 2^29) / 2^30`)."""
    return (ram_bytes + (1 << 29)) >> 30


def ram_token(model_token: str, gib: int) -> str:
    """The token of one model with one ram size: `nvidia/a100/80gi`."""
    return f"{model_token}/{gib}gi"


def node_token(token: str, gpus: int) -> str:
    """`nvidia/a100/80gi#8`: some node has `gpus` free GPUs of one model that `token` (a vendor,
    model or ram token) names."""
    return f"{token}#{gpus}"
