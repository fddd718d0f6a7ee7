"""The aggregator: an Akash-style GroupSpec JSON -> a validated `GroupRequest`.

Pure functions only. `parse_group_spec` validates the request and keeps what the bin-packer
needs (per-unit replicas, CPU, memory, storage volumes, GPU alternatives with ram/interface,
LEASED_IP endpoints), signedBy, self attributes and the reclamation window;
`screening_filter.screening_filter` then reduces it to what the SQL prefilter checks. The
field validators are `request_fields`, the GPU attributes `gpu_attributes`. Bad input raises
`InvalidRequest` naming the field (`resources[0].resource.gpu.attributes[1].key: ...`).
"""

from __future__ import annotations

from typing import Any

from hwledger.query.gpu_attributes import parse_gpu
from hwledger.query.group_request import (
    Attribute,
    GroupRequest,
    PersistentVolume,
    ResourceUnit,
)
from hwledger.query.request_fields import (
    InvalidRequest,
    attributes,
    expect_list,
    expect_object,
    expect_text,
    glob_attributes,
    kind_of,
    names,
    parse_quantity,
    pick,
    reclamation_window,
)
from hwledger.query.screening_filter import screening_filter

LEASED_IP = "LEASED_IP"
ENDPOINT_KINDS = ("SHARED_HTTP", "RANDOM_PORT", LEASED_IP)
MAX_COUNT = 10_000
RAM_CLASS = "ram"


def _storage(value: Any, field: str) -> tuple[int, int, tuple[PersistentVolume, ...]]:
    """(ephemeral bytes, RAM-volume bytes, persistent volumes) of one unit."""
    ephemeral = ram = 0
    persistent = []
    for index, item in enumerate(expect_list(value, field)):
        here = f"{field}[{index}]"
        volume = expect_object(item, here)
        size = parse_quantity(pick(volume, "quantity", "size"), f"{here}.quantity")
        attrs = {a.key: a.value
                 for a in attributes(volume.get("attributes"), f"{here}.attributes")}
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


def _endpoints(value: Any, field: str) -> frozenset[int]:
    """The sequence numbers of a unit's LEASED_IP endpoints (`{kind, sequenceNumber}`, or
    `sequence_number` as in Akash's REST JSON; an absent number is 0, protobuf's default)."""
    found = set()
    for index, item in enumerate(expect_list(value, field)):
        here = f"{field}[{index}]"
        endpoint = expect_object(item, here)
        kind = expect_text(endpoint.get("kind"), f"{here}.kind")
        if kind not in ENDPOINT_KINDS:
            raise InvalidRequest(f"{here}.kind", f"unknown endpoint kind {kind!r} (one of "
                                                 f"{', '.join(ENDPOINT_KINDS)})")
        number = pick(endpoint, "sequenceNumber", "sequence_number")
        number = 0 if number is None else number
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < 2**32:
            raise InvalidRequest(f"{here}.sequenceNumber",
                                 f"expected an integer 0..{2**32 - 1}, got {number!r}")
        if kind == LEASED_IP:
            found.add(number)
    return frozenset(found)


def _unit(value: Any, field: str) -> ResourceUnit:
    entry = expect_object(value, field)
    count_value = entry.get("count", 1)
    if isinstance(count_value, bool) or not isinstance(count_value, int):
        raise InvalidRequest(f"{field}.count", f"expected an integer, got {kind_of(count_value)}")
    if not 1 <= count_value <= MAX_COUNT:
        raise InvalidRequest(f"{field}.count", f"must be between 1 and {MAX_COUNT}, got "
                                               f"{count_value}")
    here = f"{field}.resource"
    resource = expect_object(entry.get("resource"), here)
    cpu = resource.get("cpu")
    memory = resource.get("memory")
    cpu_millicores = 0 if cpu is None else parse_quantity(
        expect_object(cpu, f"{here}.cpu").get("units", 0), f"{here}.cpu.units")
    memory_quantity = None if memory is None else pick(expect_object(memory, f"{here}.memory"),
                                                        "quantity", "size")
    memory_bytes = 0 if memory_quantity is None else parse_quantity(
        memory_quantity, f"{here}.memory.quantity")
    ephemeral, ram, persistent = _storage(resource.get("storage"), f"{here}.storage")
    gpu_units, alternatives = parse_gpu(resource.get("gpu"), f"{here}.gpu")
    return ResourceUnit(count=count_value, cpu_millicores=cpu_millicores,
                        memory_bytes=memory_bytes, ram_volume_bytes=ram,
                        ephemeral_bytes=ephemeral, persistent=persistent,
                        gpu_units=gpu_units, gpu_alternatives=alternatives,
                        leased_ip_endpoints=_endpoints(resource.get("endpoints"),
                                                       f"{here}.endpoints"))


def _requirements(value: Any) -> tuple[tuple[str, ...], tuple[str, ...], tuple[Attribute, ...]]:
    if value is None:
        return (), (), ()
    req = expect_object(value, "requirements")
    signed = pick(req, "signedBy", "signed_by")
    all_of: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    if signed is not None:
        signed_obj = expect_object(signed, "requirements.signedBy")
        all_of = names(pick(signed_obj, "allOf", "all_of"), "requirements.signedBy.allOf")
        any_of = names(pick(signed_obj, "anyOf", "any_of"), "requirements.signedBy.anyOf")
    return all_of, any_of, glob_attributes(req.get("attributes"), "requirements.attributes")


def parse_group_spec(document: Any) -> GroupRequest:
    """Validate a GroupSpec JSON document (already json-decoded)."""
    spec = expect_object(document, "body")
    units_value = spec.get("resources")
    if not isinstance(units_value, list) or not units_value:
        raise InvalidRequest("resources", "expected a non-empty list of resource units")
    units = tuple(_unit(item, f"resources[{i}]")
                  for i, item in enumerate(expect_list(units_value, "resources")))
    all_of, any_of, attrs = _requirements(spec.get("requirements"))
    request = GroupRequest(units, all_of, any_of, attrs, reclamation_window(
        pick(spec, "reclamationWindow", "reclamation_window")))
    screening_filter(request)  # totals must fit the database's integers
    return request
