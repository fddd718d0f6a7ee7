"""Interface names normalised once: a request's (refusing unknown spellings) and a free GPU's
(lenient, as the SQL of /v1/gpus), and a request's GPU ram through the shared quantity
parser."""

from __future__ import annotations

import pytest

from hwledger.query.gpu_attributes import interface_family, normalize_interface, parse_ram
from hwledger.query.request_fields import InvalidRequest
from hwledger.schemas.units import GiB, MiB


@pytest.mark.parametrize(("text", "family"), [
    ("pcie", "pcie"), ("PCIe", "pcie"), ("sxm", "sxm"), ("SXM4", "sxm"), ("sxm5", "sxm"),
])
def test_request_and_inventory_spellings_share_one_family(text: str, family: str) -> None:
    assert normalize_interface(text, "k") == family
    assert interface_family(text) == family


@pytest.mark.parametrize("text", ["nvlink", "oam", "sxm5x", "pci", " sxm", ""])
def test_a_request_refuses_unknown_interfaces(text: str) -> None:
    with pytest.raises(InvalidRequest, match="unknown GPU interface"):
        normalize_interface(text, "k")


def test_inventory_interfaces_are_trimmed_and_lowercased() -> None:
    assert interface_family(" SXM2 ") == "sxm" and interface_family("OAM") == "oam"


def test_gpu_ram_takes_binary_suffixes_only() -> None:
    assert parse_ram("80Gi", "k") == 80 * GiB and parse_ram("81920Mi", "k") == 81920 * MiB
    assert parse_ram("1Ti", "k") == 2**40 and parse_ram("4096", "k") == 4096
    for text in ("0Gi", "0", "80G", "80GB", "1Pi", "9" * 16):
        with pytest.raises(InvalidRequest, match="GPU ram"):
            parse_ram(text, "k")
