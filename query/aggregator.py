"""The aggregator: an Akash-style GroupSpec JSON -> a parsed `GroupRequest` -> `BidScreeningFilter`.

Pure functions only. `parse_group_spec` validates the request and keeps what the bin-packer
needs (per-unit replicas, GPU alternatives with ram/interface); `screening_filter` reduces it to
the capacity totals, per-node maxima, per-unit GPU tokens and storage classes, signedBy and
self attributes, the leased IPs (distinct LEASED_IP endpoint sequence numbers across the whole
group) and the reclamation window that the SQL prefilter checks. Bad input raises
`InvalidRequest` naming the field (`resources[0].resource.gpu.attributes[1].key: ...`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hwledger.schemas.errors import UserError
from hwledger.schemas.tokens import request_token

MAX_QUANTITY = 2**50  # ~1 PiB of bytes, ~1e15 millicores: anything larger is a typo
MAX_TOTAL = 2**63 - 1
"""The largest total (or per-node maximum) a request may ask for: the largest Postgres bigint,
which the read model's totals saturate at
(docs/adr/0038-unlimited-allocatable-and-saturated-totals.md)."""
MAX_RECLAMATION_WINDOW = MAX_TOTAL
LEASED_IP = "LEASED_IP"
ENDPOINT_KINDS = ("SHARED_HTTP", "RANDOM_PORT", LEASED_IP)
MAX_COUNT = 10_000
MAX_ITEMS = 64
MAX_TEXT = 256
INTERFACES = {"pcie": "pcie", "sxm": "sxm"}
_SXM = re.compile(r"^sxm\d*$")
_RAM = re.compile(r"^(?P<n>\d{1,15})(?P<unit>Ki|Mi|Gi|Ti)?$")
_UNIT_BYTES = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
RAM_CLASS = "ram"


class InvalidRequest(UserError):
    """A request field that cannot be used; `field` is its JSON path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.detail = message


@dataclass(frozen=True)
class Attribute:
    key: str
    value: str


@dataclass(frozen=True)
class GpuAlternative:
    """One GPU attribute of a unit: vendor, optional model (None = any), ram and interface."""

    vendor: str
    model: str | None = None
    ram_bytes: int | None = None
    interface: str | None = None

    @property
    def token(self) -> str:
        return request_token(self.vendor, self.model)


@dataclass(frozen=True)
class PersistentVolume:
    storage_class: str
    size_bytes: int


@dataclass(frozen=True)
class ResourceUnit:
    """One `resources[]` entry: the per-replica needs and how many replicas."""

    count: int
    cpu_millicores: int = 0
    memory_bytes: int = 0
    ram_volume_bytes: int = 0
    ephemeral_bytes: int = 0
    persistent: tuple[PersistentVolume, ...] = ()
    gpu_units: int = 0
    gpu_alternatives: tuple[GpuAlternative, ...] = ()
    leased_ip_endpoints: frozenset[int] = frozenset()
    """Sequence numbers of the unit's LEASED_IP endpoints (the others need no leased IP)."""

    @property
    def node_memory_bytes(self) -> int:
        """Memory one replica takes on its node: memory plus RAM-class volumes."""
        return self.memory_bytes + self.ram_volume_bytes

    @property
    def gpu_tokens(self) -> tuple[str, ...]:
        """OR-alternatives for the prefilter; empty for a unit without GPUs or any GPU."""
        if self.gpu_units == 0:
            return ()
        return tuple(sorted({alt.token for alt in self.gpu_alternatives}))

    @property
    def storage_classes(self) -> tuple[str, ...]:
        return tuple(sorted({v.storage_class for v in self.persistent}))


@dataclass(frozen=True)
class GroupRequest:
    """A validated GroupSpec; `reclamation_window` in seconds (None: none asked for)."""

    units: tuple[ResourceUnit, ...]
    signed_by_all_of: tuple[str, ...] = ()
    signed_by_any_of: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    reclamation_window: int | None = None

    @property
    def leased_ips(self) -> int:
        """Leased IPs the group needs: its distinct LEASED_IP sequence numbers (Akash AC18: an
        endpoint several units share is one IP)."""
        return len(frozenset().union(*(u.leased_ip_endpoints for u in self.units)))


@dataclass(frozen=True)
class UnitScreen:
    gpu_tokens: tuple[str, ...] = ()
    storage_classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BidScreeningFilter:
    """What the SQL prefilter checks (DESIGN section 6); `reclamation_window` in seconds."""

    total_cpu: int = 0
    total_memory: int = 0
    total_gpu: int = 0
    total_ephemeral: int = 0
    total_persistent: int = 0
    max_node_cpu: int = 0
    max_node_memory: int = 0
    max_node_gpu: int = 0
    units: tuple[UnitScreen, ...] = ()
    signed_by_all_of: tuple[str, ...] = ()
    signed_by_any_of: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    total_leased_ip: int = 0
    reclamation_window: int | None = None


# ---- small validators -------------------------------------------------------------------


def _object(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(field, f"expected an object, got {_kind(value)}")
    return value


def _list(value: Any, field: str, limit: int = MAX_ITEMS) -> Sequence[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(field, f"expected a list, got {_kind(value)}")
    if len(value) > limit:
        raise InvalidRequest(field, f"at most {limit} items allowed, got {len(value)}")
    return value


def _text(value: Any, field: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(field, f"expected a string, got {_kind(value)}")
    if not value and not allow_empty:
        raise InvalidRequest(field, "must not be empty")
    if len(value) > MAX_TEXT:
        raise InvalidRequest(field, f"longer than {MAX_TEXT} characters")
    if "\x00" in value:
        raise InvalidRequest(field, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(field, "is not valid Unicode text") from None
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _pick(obj: Mapping[str, Any], *names: str) -> Any:
    """The first present key among aliases (camelCase as in DESIGN, snake_case as in Akash)."""
    for name in names:
        if name in obj:
            return obj[name]
    return None


def parse_quantity(value: Any, field: str) -> int:
    """An Akash quantity: `{"val": ...}` or the bare value; a decimal string, base64 of a
    decimal string, or a non-negative integer."""
    if isinstance(value, dict):
        if "val" not in value:
            raise InvalidRequest(field, "expected an object with 'val'")
        value = value["val"]
        field = f"{field}.val"
    if isinstance(value, bool) or value is None:
        raise InvalidRequest(field, f"expected a quantity, got {_kind(value)}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        number = _decimal_or_base64(value, field)
    else:
        raise InvalidRequest(field, f"expected a decimal string or integer, got {_kind(value)}")
    if number < 0:
        raise InvalidRequest(field, f"must not be negative, got {number}")
    if number > MAX_QUANTITY:
        raise InvalidRequest(field, f"{number} is absurdly large (limit {MAX_QUANTITY})")
    return number


def _decimal_or_base64(text: str, field: str) -> int:
    stripped = text.strip()
    if re.fullmatch(r"-?\d{1,19}", stripped):
        return int(stripped)
    try:
        decoded = base64.b64decode(stripped, validate=True).decode("ascii").strip()
    except (binascii.Error, ValueError):
        decoded = ""
    if re.fullmatch(r"\d{1,19}", decoded):
        return int(decoded)
    raise InvalidRequest(field, f"{text[:40]!r} is not a decimal quantity or base64 of one")


def _attributes(value: Any, field: str) -> tuple[Attribute, ...]:
    found = []
    for index, item in enumerate(_list(value, field)):
        here = f"{field}[{index}]"
        obj = _object(item, here)
        found.append(Attribute(_text(obj.get("key"), f"{here}.key"),
                               _text(obj.get("value"), f"{here}.value", allow_empty=True)))
    return tuple(found)


def _names(value: Any, field: str) -> tuple[str, ...]:
    return tuple(sorted({_text(v, f"{field}[{i}]") for i, v in enumerate(_list(value, field))}))


# ---- GPU attributes ---------------------------------------------------------------------


def parse_ram(text: str, field: str) -> int:
    """`80Gi`, `81920Mi`, `1Ti` or plain bytes -> bytes."""
    match = _RAM.match(text)
    if not match or int(match["n"]) == 0:
        raise InvalidRequest(field, f"GPU ram {text!r} is not like 80Gi or 81920Mi")
    return int(match["n"]) * _UNIT_BYTES[match["unit"]]


def normalize_interface(text: str, field: str) -> str:
    """`pcie`, `sxm`, `sxm2`..`sxm5` (any case) -> `pcie` | `sxm`; anything else is refused."""
    lowered = text.lower()
    if _SXM.match(lowered):
        return "sxm"
    if lowered in INTERFACES:
        return INTERFACES[lowered]
    raise InvalidRequest(field, f"unknown GPU interface {text!r} (use pcie or sxm)")


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


def _gpu(value: Any, field: str) -> tuple[int, tuple[GpuAlternative, ...]]:
    if value is None:
        return 0, ()
    obj = _object(value, field)
    units = parse_quantity(obj.get("units", 0), f"{field}.units")
    alternatives = []
    for index, item in enumerate(_list(obj.get("attributes"), f"{field}.attributes")):
        here = f"{field}.attributes[{index}]"
        attr = _object(item, here)
        key = _text(attr.get("key"), f"{here}.key")
        flag = attr.get("value", "true")
        if not isinstance(flag, str) or flag.lower() != "true":
            raise InvalidRequest(f"{here}.value", "GPU attributes take the value \"true\"")
        alternatives.append(parse_gpu_attribute(key, f"{here}.key"))
    return units, tuple(dict.fromkeys(alternatives))


# ---- storage ----------------------------------------------------------------------------


def _storage(value: Any, field: str) -> tuple[int, int, tuple[PersistentVolume, ...]]:
    """(ephemeral bytes, RAM-volume bytes, persistent volumes) of one unit."""
    ephemeral = ram = 0
    persistent = []
    for index, item in enumerate(_list(value, field)):
        here = f"{field}[{index}]"
        volume = _object(item, here)
        size = parse_quantity(_pick(volume, "quantity", "size"), f"{here}.quantity")
        attrs = {a.key: a.value
                 for a in _attributes(volume.get("attributes"), f"{here}.attributes")}
        is_persistent = attrs.get("persistent", "false").lower() == "true"
        storage_class = attrs.get("class")
        if storage_class == RAM_CLASS:
            if is_persistent:
                raise InvalidRequest(here, "a RAM-class volume cannot be persistent")
            ram += size
        elif is_persistent:
            if not storage_class:
                raise InvalidRequest(here, "persistent storage needs a 'class' attribute")
            persistent.append(PersistentVolume(storage_class, size))
        else:
            ephemeral += size
    return ephemeral, ram, tuple(persistent)


# ---- endpoints --------------------------------------------------------------------------


def _endpoints(value: Any, field: str) -> frozenset[int]:
    """The sequence numbers of a unit's LEASED_IP endpoints (`{kind, sequenceNumber}`, or
    `sequence_number` as in Akash's REST JSON; an absent number is 0, protobuf's default)."""
    found = set()
    for index, item in enumerate(_list(value, field)):
        here = f"{field}[{index}]"
        endpoint = _object(item, here)
        kind = _text(endpoint.get("kind"), f"{here}.kind")
        if kind not in ENDPOINT_KINDS:
            raise InvalidRequest(f"{here}.kind", f"unknown endpoint kind {kind!r} (one of "
                                                 f"{', '.join(ENDPOINT_KINDS)})")
        number = _pick(endpoint, "sequenceNumber", "sequence_number")
        number = 0 if number is None else number
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < 2**32:
            raise InvalidRequest(f"{here}.sequenceNumber",
                                 f"expected an integer 0..{2**32 - 1}, got {number!r}")
        if kind == LEASED_IP:
            found.add(number)
    return frozenset(found)


def _reclamation_window(value: Any, field: str = "reclamationWindow") -> int | None:
    """`reclamationWindow`: seconds the provider must give notice for at least (as the peer's
    field); absent or null = none asked for."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(field, f"expected seconds as an integer, got {_kind(value)}")
    if not 1 <= value <= MAX_RECLAMATION_WINDOW:
        raise InvalidRequest(field,
                             f"must be between 1 and {MAX_RECLAMATION_WINDOW} seconds, got "
                             f"{value}")
    return value


# ---- the GroupSpec ----------------------------------------------------------------------


def _unit(value: Any, field: str) -> ResourceUnit:
    entry = _object(value, field)
    count_value = entry.get("count", 1)
    if isinstance(count_value, bool) or not isinstance(count_value, int):
        raise InvalidRequest(f"{field}.count", f"expected an integer, got {_kind(count_value)}")
    if not 1 <= count_value <= MAX_COUNT:
        raise InvalidRequest(f"{field}.count", f"must be between 1 and {MAX_COUNT}, got "
                                               f"{count_value}")
    here = f"{field}.resource"
    resource = _object(entry.get("resource"), here)
    cpu = resource.get("cpu")
    memory = resource.get("memory")
    cpu_millicores = 0 if cpu is None else parse_quantity(
        _object(cpu, f"{here}.cpu").get("units", 0), f"{here}.cpu.units")
    memory_quantity = None if memory is None else _pick(_object(memory, f"{here}.memory"),
                                                         "quantity", "size")
    memory_bytes = 0 if memory_quantity is None else parse_quantity(
        memory_quantity, f"{here}.memory.quantity")
    ephemeral, ram, persistent = _storage(resource.get("storage"), f"{here}.storage")
    gpu_units, alternatives = _gpu(resource.get("gpu"), f"{here}.gpu")
    return ResourceUnit(count=count_value, cpu_millicores=cpu_millicores,
                        memory_bytes=memory_bytes, ram_volume_bytes=ram,
                        ephemeral_bytes=ephemeral, persistent=persistent,
                        gpu_units=gpu_units, gpu_alternatives=alternatives,
                        leased_ip_endpoints=_endpoints(resource.get("endpoints"),
                                                       f"{here}.endpoints"))


def _requirements(value: Any) -> tuple[tuple[str, ...], tuple[str, ...], tuple[Attribute, ...]]:
    if value is None:
        return (), (), ()
    req = _object(value, "requirements")
    signed = _pick(req, "signedBy", "signed_by")
    all_of: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    if signed is not None:
        signed_obj = _object(signed, "requirements.signedBy")
        all_of = _names(_pick(signed_obj, "allOf", "all_of"), "requirements.signedBy.allOf")
        any_of = _names(_pick(signed_obj, "anyOf", "any_of"), "requirements.signedBy.anyOf")
    attributes = _attributes(req.get("attributes"), "requirements.attributes")
    for index, attr in enumerate(attributes):
        if "*" in attr.key[:-1]:
            raise InvalidRequest(f"requirements.attributes[{index}].key",
                                 "'*' is only allowed as the last character")
    return all_of, any_of, attributes


def parse_group_spec(document: Any) -> GroupRequest:
    """Validate a GroupSpec JSON document (already json-decoded)."""
    spec = _object(document, "body")
    units_value = spec.get("resources")
    if not isinstance(units_value, list) or not units_value:
        raise InvalidRequest("resources", "expected a non-empty list of resource units")
    units = tuple(_unit(item, f"resources[{i}]")
                  for i, item in enumerate(_list(units_value, "resources")))
    all_of, any_of, attributes = _requirements(spec.get("requirements"))
    request = GroupRequest(units, all_of, any_of, attributes, _reclamation_window(
        _pick(spec, "reclamationWindow", "reclamation_window")))
    screening_filter(request)  # totals must fit the database's integers
    return request


def screening_filter(request: GroupRequest) -> BidScreeningFilter:
    """Reduce a request to what the prefilter checks."""
    units = request.units
    built = BidScreeningFilter(
        total_cpu=sum(u.cpu_millicores * u.count for u in units),
        total_memory=sum(u.node_memory_bytes * u.count for u in units),
        total_gpu=sum(u.gpu_units * u.count for u in units),
        total_ephemeral=sum(u.ephemeral_bytes * u.count for u in units),
        total_persistent=sum(v.size_bytes * u.count for u in units for v in u.persistent),
        max_node_cpu=max(u.cpu_millicores for u in units),
        max_node_memory=max(u.node_memory_bytes for u in units),
        max_node_gpu=max(u.gpu_units for u in units),
        units=tuple(UnitScreen(u.gpu_tokens, u.storage_classes) for u in units),
        signed_by_all_of=request.signed_by_all_of,
        signed_by_any_of=request.signed_by_any_of,
        attributes=request.attributes,
        total_leased_ip=request.leased_ips,
        reclamation_window=request.reclamation_window,
    )
    check_totals(built)
    return built


_TOTALS = ("total_cpu", "total_memory", "total_gpu", "total_ephemeral", "total_persistent",
           "max_node_cpu", "max_node_memory", "max_node_gpu", "total_leased_ip")


def check_totals(built: BidScreeningFilter) -> None:
    for name in _TOTALS:
        if getattr(built, name) > MAX_TOTAL:
            raise InvalidRequest("resources", f"{name} {getattr(built, name)} is absurdly large")


# ---- the filter's own JSON form (POST /v1/prefilter, explain=true) ---------------------


def filter_to_json(built: BidScreeningFilter) -> dict[str, Any]:
    """The filter as JSON; `filter_from_json` reads it back."""
    return {
        **{name: getattr(built, name) for name in _TOTALS},
        "units": [{"gpu_tokens": list(u.gpu_tokens), "storage_classes": list(u.storage_classes)}
                  for u in built.units],
        "signed_by": {"all_of": list(built.signed_by_all_of),
                      "any_of": list(built.signed_by_any_of)},
        "attributes": [{"key": a.key, "value": a.value} for a in built.attributes],
        "reclamation_window": built.reclamation_window,
    }


def _count(value: Any, field: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(field, f"expected an integer, got {_kind(value)}")
    if not 0 <= value <= MAX_TOTAL:
        raise InvalidRequest(field, f"must be between 0 and {MAX_TOTAL}, got {value}")
    return value


def filter_from_json(document: Any) -> BidScreeningFilter:
    """Validate a BidScreeningFilter JSON document (the form `filter_to_json` writes)."""
    doc = _object(document, "body")
    known = {*_TOTALS, "units", "signed_by", "attributes", "reclamation_window"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise InvalidRequest(unknown[0], "unknown field")
    units = []
    for index, item in enumerate(_list(doc.get("units"), "units")):
        here = f"units[{index}]"
        unit = _object(item, here)
        tokens = tuple(sorted({t.lower() for t in _names(unit.get("gpu_tokens"),
                                                         f"{here}.gpu_tokens")}))
        units.append(UnitScreen(tokens, _names(unit.get("storage_classes"),
                                               f"{here}.storage_classes")))
    signed = _object(doc.get("signed_by") or {}, "signed_by")
    attributes = _attributes(doc.get("attributes"), "attributes")
    for index, attr in enumerate(attributes):
        if "*" in attr.key[:-1]:
            raise InvalidRequest(f"attributes[{index}].key",
                                 "'*' is only allowed as the last character")
    return BidScreeningFilter(
        **{name: _count(doc.get(name), name) for name in _TOTALS},
        units=tuple(units),
        signed_by_all_of=_names(signed.get("all_of"), "signed_by.all_of"),
        signed_by_any_of=_names(signed.get("any_of"), "signed_by.any_of"),
        attributes=attributes,
        reclamation_window=_reclamation_window(doc.get("reclamation_window"),
                                               "reclamation_window"),
    )
