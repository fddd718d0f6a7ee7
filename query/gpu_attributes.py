"""GPU attributes: a request's `vendor/<v>[/model/<m>[/ram/<r>][/interface/<i>]]` and the free
GPUs that have them.

Pure. `parse_gpu` reads a unit's `gpu` object (units and OR-alternatives, each attribute with
the value "true"); `parse_gpu_attribute` one attribute key, with its ram (`80Gi`) and
interface (`pcie`, `sxm`, `sxm2`..`sxm5`) normalised; bad input raises `InvalidRequest`.
`gpu_kind` is what a request can ask of a free GPU (vendor and model tokens, ram in whole GiB,
interface family) and `matches` says whether a kind satisfies one alternative.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, NamedTuple

from hwledger.query.group_request import GpuAlternative
from hwledger.query.request_fields import (
    InvalidRequest,
    expect_list,
    expect_object,
    expect_text,
    parse_quantity,
)
from hwledger.schemas.quantities import BINARY_SUFFIXES, suffixed_quantity
from hwledger.schemas.tokens import gpu_tokens, ram_gib

_SXM = re.compile(r"^sxm\d*$")
RAM_DIGITS = 15


def parse_ram(text: str, field: str) -> int:
    """`80Gi`, `81920Mi`, `1Ti` or plain bytes -> bytes."""
    found = suffixed_quantity(text, BINARY_SUFFIXES, RAM_DIGITS)
    if not found:
        raise InvalidRequest(field, f"GPU ram {text!r} is not like 80Gi or 81920Mi")
    return found


def normalize_interface(text: str, field: str) -> str:
    """`pcie`, `sxm`, `sxm2`..`sxm5` (any case) -> `pcie` | `sxm`; anything else is refused."""
    lowered = text.lower()
    if lowered != "pcie" and not _SXM.match(lowered):
        raise InvalidRequest(field, f"unknown GPU interface {text!r} (use pcie or sxm)")
    return interface_family(lowered)


def parse_gpu_attribute(key: str, field: str) -> GpuAlternative:
    """`vendor/<v>[/model/<m>[/ram/<r>][/interface/<i>]]` -> one GpuAlternative."""
    parts = key.split("/")
    if len(parts) < 2 or parts[0] != "vendor" or not parts[1] or parts[1] == "*":
        raise InvalidRequest(field, f"GPU attribute {key!r} must start with vendor/<name>")
    if len(parts) % 2:
        raise InvalidRequest(field, f"GPU attribute {key!r} is not a list of name/value pairs")
    values: dict[str, str] = {}
    for name, value in zip(parts[2::2], parts[3::2], strict=True):
        if name not in ("model", "ram", "interface") or name in values or not value:
            raise InvalidRequest(field, f"GPU attribute {key!r}: unexpected {name!r}")
        values[name] = value
    model = values.get("model")
    ram = values.get("ram")
    interface = values.get("interface")
    return GpuAlternative(
        vendor=parts[1].lower(),
        model=None if model in (None, "*") else str(model).lower(),
        ram_bytes=None if ram is None else parse_ram(ram, field),
        interface=None if interface is None else normalize_interface(interface, field),
    )


def parse_gpu(value: Any, field: str) -> tuple[int, tuple[GpuAlternative, ...]]:
    """A unit's `gpu` object -> (GPUs per replica, distinct alternatives in request order)."""
    if value is None:
        return 0, ()
    obj = expect_object(value, field)
    units = parse_quantity(obj.get("units", 0), f"{field}.units")
    alternatives = []
    for index, item in enumerate(expect_list(obj.get("attributes"), f"{field}.attributes")):
        here = f"{field}.attributes[{index}]"
        attr = expect_object(item, here)
        key = expect_text(attr.get("key"), f"{here}.key")
        flag = attr.get("value", "true")
        if not isinstance(flag, str) or flag.lower() != "true":
            raise InvalidRequest(f"{here}.value", "GPU attributes take the value \"true\"")
        alternatives.append(parse_gpu_attribute(key, f"{here}.key"))
    return units, tuple(dict.fromkeys(alternatives))


class GpuKind(NamedTuple):
    """What a request can ask of a GPU: vendor and `vendor/model` tokens, ram in whole GiB,
    interface family."""

    vendor: str
    model: str
    ram_gib: int
    interface: str


@lru_cache(maxsize=4096)
def gpu_kind(vendor: str, model: str, vram_bytes: int, interface: str) -> GpuKind:
    vendor_token, model_token = gpu_tokens(vendor, model)
    return GpuKind(vendor_token, model_token, ram_gib(vram_bytes),
                   interface_family(interface))


def interface_family(interface: str) -> str:
    """`sxm`, `sxm4`, `SXM5` -> `sxm`; anything else trimmed and lowercased (`pcie`). The one
    normalisation of interface names: of free GPUs here and in SQL
    (`repository.gpu_availability_statement`), of a request's after `normalize_interface`
    refused unknown spellings."""
    lowered = interface.strip().lower()
    return "sxm" if lowered.startswith("sxm") else lowered


def matches(alternative: GpuAlternative, kind: GpuKind) -> bool:
    """Does a free GPU of this kind satisfy one GPU attribute of a request?"""
    if alternative.token != (kind.vendor if alternative.model is None else kind.model):
        return False
    if alternative.ram_bytes is not None and ram_gib(alternative.ram_bytes) != kind.ram_gib:
        return False
    return alternative.interface is None or alternative.interface == kind.interface


