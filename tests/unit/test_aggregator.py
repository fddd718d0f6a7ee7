"""The aggregator: GroupSpec JSON -> GroupRequest -> BidScreeningFilter, and its errors."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from hwledger.query.aggregator import parse_group_spec
from hwledger.query.gpu_attributes import parse_gpu_attribute
from hwledger.query.group_request import Attribute, GpuAlternative
from hwledger.query.request_fields import MAX_QUANTITY, InvalidRequest, parse_quantity
from hwledger.query.screening_filter import (
    BidScreeningFilter,
    UnitScreen,
    filter_from_json,
    filter_to_json,
    screening_filter,
)
from hwledger.schemas.units import GiB


def unit(cpu: Any = "1000", memory: Any = str(GiB), count: int = 1,
         gpu: dict[str, Any] | None = None, storage: list[Any] | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {"cpu": {"units": {"val": cpu}},
                                "memory": {"quantity": {"val": memory}},
                                "storage": storage or []}
    if gpu is not None:
        resource["gpu"] = gpu
    return {"resource": resource, "count": count}


def gpu(units: int, *keys: str) -> dict[str, Any]:
    return {"units": {"val": str(units)},
            "attributes": [{"key": k, "value": "true"} for k in keys]}


def spec(*units: dict[str, Any], **requirements: Any) -> dict[str, Any]:
    return {"name": "g", "requirements": requirements, "resources": list(units)}


def message(document: Any) -> str:
    with pytest.raises(InvalidRequest) as caught:
        parse_group_spec(document)
    return str(caught.value)


def test_quantities_are_decimal_strings_base64_or_integers() -> None:
    assert parse_quantity({"val": "2500"}, "q") == 2500
    assert parse_quantity({"val": base64.b64encode(b"2500").decode()}, "q") == 2500
    assert parse_quantity("17", "q") == 17
    assert parse_quantity(3, "q") == 3


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", True, None, [1], {"x": 1},
                                   str(MAX_QUANTITY + 1)])
def test_bad_quantities_name_the_field(value: Any) -> None:
    with pytest.raises(InvalidRequest, match=r"^cpu\.units"):
        parse_quantity(value, "cpu.units")


def test_totals_multiply_by_count_and_maxima_are_per_replica() -> None:
    request = parse_group_spec(spec(unit("2000", str(4 * GiB), count=3),
                                    unit("500", str(GiB), count=2)))
    screen = screening_filter(request)
    assert (screen.total_cpu, screen.max_node_cpu) == (7000, 2000)
    assert (screen.total_memory, screen.max_node_memory) == (14 * GiB, 4 * GiB)


def test_ram_volumes_count_as_memory_and_others_split_by_persistence() -> None:
    storage = [
        {"name": "shm", "quantity": {"val": str(GiB)},
         "attributes": [{"key": "class", "value": "ram"}]},
        {"name": "data", "quantity": {"val": str(10 * GiB)},
         "attributes": [{"key": "persistent", "value": "true"},
                        {"key": "class", "value": "beta3"}]},
        {"name": "default", "quantity": {"val": str(5 * GiB)}},
    ]
    request = parse_group_spec(spec(unit(memory=str(2 * GiB), count=2, storage=storage)))
    screen = screening_filter(request)
    assert screen.total_memory == 6 * GiB and screen.max_node_memory == 3 * GiB
    assert screen.total_ephemeral == 10 * GiB and screen.total_persistent == 20 * GiB
    assert screen.units == (UnitScreen((), ("beta3",)),)


def test_gpu_tokens_per_unit_or_alternatives_lowercased() -> None:
    request = parse_group_spec(spec(
        unit(gpu=gpu(2, "vendor/nvidia/model/H100/ram/80Gi/interface/sxm5",
                     "vendor/nvidia/model/a100")),
        unit(gpu=gpu(1, "vendor/AMD/model/*")),
        unit(),
        unit(gpu=gpu(0, "vendor/nvidia/model/t4")),
    ))
    assert [u.gpu_tokens for u in screening_filter(request).units] == [
        ("nvidia/a100", "nvidia/h100"), ("amd",), (), ()]
    assert screening_filter(request).total_gpu == 3


def test_node_tokens_per_unit_name_one_replicas_gpus_on_one_node() -> None:
    request = parse_group_spec(spec(
        unit(gpu=gpu(2, "vendor/nvidia/model/H100/ram/80Gi/interface/sxm5",
                     "vendor/nvidia/model/a100")),
        unit(gpu=gpu(12, "vendor/nvidia/model/a100/ram/80Gi", "vendor/nvidia/model/a100/ram/40Gi",
                     "vendor/amd/ram/192Gi")),
        unit(gpu=gpu(1, "vendor/nvidia/model/h100/ram/81920Mi")),
        unit(gpu=gpu(1, "vendor/nvidia/model/h100", "vendor/amd")),
        unit(gpu=gpu(4)),
        unit(),
    ))
    assert [u.gpu_node_tokens for u in screening_filter(request).units] == [
        ("nvidia/a100#2", "nvidia/h100/80gi#2"),
        ("amd#8", "nvidia/a100#8"),  # 12 -> step 8; two rams of one model count as the model
        ("nvidia/h100/80gi#1",),  # one GPU, but of one ram
        (), (), ()]  # no more than the GPU tokens say, any GPU, no GPU


def test_gpu_attribute_parts() -> None:
    assert parse_gpu_attribute("vendor/nvidia/model/h100/ram/81920Mi/interface/SXM4", "k") == \
        GpuAlternative("nvidia", "h100", 80 * GiB, "sxm")
    assert parse_gpu_attribute("vendor/nvidia", "k") == GpuAlternative("nvidia")
    assert parse_gpu_attribute("vendor/nvidia/model/*", "k").token == "nvidia"


@pytest.mark.parametrize(("key", "words"), [
    ("model/h100", "must start with vendor"),
    ("vendor//model/h100", "must start with vendor"),
    ("vendor/*", "must start with vendor"),
    ("vendor/nvidia/model", "name/value pairs"),
    ("vendor/nvidia/model/h100/interface/nvlink", "unknown GPU interface"),
    ("vendor/nvidia/model/h100/ram/80GB", "GPU ram"),
    ("vendor/nvidia/color/green", "unexpected 'color'"),
])
def test_bad_gpu_attributes(key: str, words: str) -> None:
    text = message(spec(unit(gpu=gpu(1, key))))
    assert text.startswith("resources[0].resource.gpu.attributes[0].key:")
    assert words in text


def test_signed_by_and_attributes_in_both_spellings() -> None:
    camel = parse_group_spec(spec(unit(), signedBy={"allOf": ["b", "a"], "anyOf": ["c"]},
                                  attributes=[{"key": "host/*", "value": "x"}]))
    snake = parse_group_spec(spec(unit(), signed_by={"all_of": ["a", "b"], "any_of": ["c"]},
                                  attributes=[{"key": "host/*", "value": "x"}]))
    assert camel == snake
    assert camel.signed_by_all_of == ("a", "b") and camel.signed_by_any_of == ("c",)
    assert camel.attributes == (Attribute("host/*", "x"),)


@pytest.mark.parametrize(("document", "start"), [
    ([], "body: expected an object"),
    ({"resources": []}, "resources: expected a non-empty list"),
    (spec(unit(count=0)), "resources[0].count: must be between 1"),
    (spec({"resource": {}, "count": "2"}), "resources[0].count: expected an integer"),
    (spec(unit(cpu="-5")), "resources[0].resource.cpu.units.val: must not be negative"),
    (spec(unit(memory="9" * 18)), "resources[0].resource.memory.quantity.val: "),
    (spec(unit(), attributes=[{"key": "a*b", "value": "x"}]),
     "requirements.attributes[0].key: '*' is only"),
    (spec(unit(), attributes=[{"key": "region", "value": 5}]),
     "requirements.attributes[0].value: expected a string"),
    (spec(unit(), attributes=[{"key": "a\x00", "value": "x"}]),
     "requirements.attributes[0].key: must not contain NUL"),
    (spec(unit(), signedBy={"allOf": "auditor"}), "requirements.signedBy.allOf: expected a list"),
    (spec(unit(storage=[{"quantity": {"val": "1"},
                         "attributes": [{"key": "persistent", "value": "true"}]}])),
     "resources[0].resource.storage[0]: persistent storage needs a 'class'"),
])
def test_bad_requests_name_the_field(document: Any, start: str) -> None:
    assert message(document).startswith(start)


def test_absurd_totals_are_refused() -> None:
    big = str(MAX_QUANTITY)
    assert "absurdly large" in message(spec(*[unit(memory=big, count=10_000)] * 2))


def test_sql_metacharacters_are_plain_values() -> None:
    request = parse_group_spec(spec(unit(), attributes=[
        {"key": "x'; DROP TABLE providers; --", "value": "' OR 1=1 --"}]))
    assert request.attributes[0].key.startswith("x'; DROP")


def test_filter_json_round_trip() -> None:
    screen = screening_filter(parse_group_spec(spec(
        unit(gpu=gpu(1, "vendor/nvidia/model/h100")), signedBy={"anyOf": ["aud"]},
        attributes=[{"key": "region", "value": "us-west"}])))
    assert filter_from_json(filter_to_json(screen)) == screen
    assert filter_from_json({}) == BidScreeningFilter()


def test_filter_json_is_camel_case_and_snake_case_is_read_too() -> None:
    camel = {"totalCpu": 5, "maxNodeGpu": 1, "units": [{"gpuTokens": ["NVIDIA/H100"]}],
             "signedBy": {"anyOf": ["aud"]}, "reclamationWindow": 60}
    snake = {"total_cpu": 5, "max_node_gpu": 1, "units": [{"gpu_tokens": ["NVIDIA/H100"]}],
             "signed_by": {"any_of": ["aud"]}, "reclamation_window": 60}
    screen = filter_from_json(camel)
    assert filter_from_json(snake) == screen
    assert screen.units[0].gpu_tokens == ("nvidia/h100",) and screen.signed_by_any_of == ("aud",)
    written = filter_to_json(screen)
    assert {"totalCpu", "maxNodeGpu", "totalLeasedIp", "signedBy", "reclamationWindow"} <= set(
        written) and not [key for key in written if "_" in key]
    assert set(written["units"][0]) == {"gpuTokens", "storageClasses", "gpuNodeTokens"}


@pytest.mark.parametrize(("document", "start"), [
    ({"totalCpu": -1}, "totalCpu: must be between"),
    ({"total_cpu": -1}, "total_cpu: must be between"),
    ({"totalCpu": 1, "total_cpu": 2}, "total_cpu: given twice, also as totalCpu"),
    ({"units": [{"gpuTokens": [1]}]}, "units[0].gpuTokens[0]: expected a string"),
    ({"signedBy": {"someOf": []}}, "signedBy.someOf: unknown field"),
    ({"reclamationWindow": 0}, "reclamationWindow: must be between 1"),
    ({"total_cpu": "1"}, "total_cpu: expected an integer"),
    ({"units": [{"gpu_tokens": [1]}]}, "units[0].gpu_tokens[0]: expected a string"),
    ({"units": [{"gpuNodeTokens": "nvidia#2"}]}, "units[0].gpuNodeTokens: expected a list"),
    ({"units": [{"gpu_node_tokens": [2]}]}, "units[0].gpu_node_tokens[0]: expected a string"),
    ({"bogus": 1}, "bogus: unknown field"),
])
def test_bad_filters_name_the_field(document: Any, start: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        filter_from_json(document)
    assert str(caught.value).startswith(start)


def endpoints(*items: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"kind": kind, "sequenceNumber": number} for kind, number in items]


def with_endpoints(*items: tuple[str, int], count: int = 1) -> dict[str, Any]:
    found = unit(count=count)
    found["resource"]["endpoints"] = endpoints(*items)
    return found


def test_leased_ips_are_the_distinct_leased_ip_sequence_numbers_of_the_group() -> None:
    request = parse_group_spec(spec(
        with_endpoints(("LEASED_IP", 1), ("SHARED_HTTP", 2), ("RANDOM_PORT", 3), count=3),
        with_endpoints(("LEASED_IP", 1)), with_endpoints(("LEASED_IP", 4), ("LEASED_IP", 4))))
    assert request.leased_ips == 2  # #1 in two units is one IP; replicas do not multiply
    assert screening_filter(request).total_leased_ip == 2


def test_endpoints_other_than_leased_ip_need_no_leased_ip() -> None:
    request = parse_group_spec(spec(with_endpoints(("SHARED_HTTP", 1), ("RANDOM_PORT", 2)),
                                    unit()))
    assert request.leased_ips == 0
    assert screening_filter(request).total_leased_ip == 0


def test_endpoint_numbers_in_both_spellings_and_absent_is_zero() -> None:
    document = spec(unit(), unit(), unit())
    document["resources"][0]["resource"]["endpoints"] = [{"kind": "LEASED_IP",
                                                          "sequence_number": 5}]
    document["resources"][1]["resource"]["endpoints"] = [{"kind": "LEASED_IP"}]
    document["resources"][2]["resource"]["endpoints"] = [{"kind": "LEASED_IP",
                                                          "sequenceNumber": 0}]
    assert parse_group_spec(document).leased_ips == 2


@pytest.mark.parametrize(("items", "start"), [
    ([{"kind": "PUBLIC_IP", "sequenceNumber": 1}],
     "resources[0].resource.endpoints[0].kind: unknown endpoint kind 'PUBLIC_IP'"),
    ([{"sequenceNumber": 1}], "resources[0].resource.endpoints[0].kind: expected a string"),
    ([{"kind": "LEASED_IP", "sequenceNumber": -1}],
     "resources[0].resource.endpoints[0].sequenceNumber: expected an integer"),
    ([{"kind": "LEASED_IP", "sequenceNumber": "1"}],
     "resources[0].resource.endpoints[0].sequenceNumber: expected an integer"),
    (["LEASED_IP"], "resources[0].resource.endpoints[0]: expected an object"),
    ({"kind": "LEASED_IP"}, "resources[0].resource.endpoints: expected a list"),
])
def test_bad_endpoints_name_the_field(items: Any, start: str) -> None:
    document = spec(unit())
    document["resources"][0]["resource"]["endpoints"] = items
    assert message(document).startswith(start)


def test_reclamation_window_is_seconds_or_absent() -> None:
    assert parse_group_spec(spec(unit())).reclamation_window is None
    asked = parse_group_spec({**spec(unit()), "reclamationWindow": 3600})
    assert asked.reclamation_window == 3600
    assert screening_filter(asked).reclamation_window == 3600
    assert parse_group_spec({**spec(unit()), "reclamation_window": 60}).reclamation_window == 60
    assert parse_group_spec({**spec(unit()), "reclamationWindow": None}).reclamation_window \
        is None


@pytest.mark.parametrize("value", [0, -5, "3600", True, 1.5, 2**63])
def test_bad_reclamation_windows_name_the_field(value: Any) -> None:
    assert message({**spec(unit()), "reclamationWindow": value}).startswith(
        "reclamationWindow: ")


def test_the_largest_total_is_the_largest_bigint() -> None:
    quantity = MAX_QUANTITY  # 2^50: 8,192 of them are 2^63
    largest = spec(unit(memory=str(quantity), count=8191), unit(memory=str(quantity - 1)))
    assert screening_filter(parse_group_spec(largest)).total_memory == 2**63 - 1
    one_more = spec(unit(memory=str(quantity), count=8191), unit(memory=str(quantity)))
    assert "totalMemory 9223372036854775808 is absurdly large" in message(one_more)
    above_the_old_cap = spec(unit(memory=str(quantity), count=4096), unit(memory="1"))
    assert screening_filter(parse_group_spec(above_the_old_cap)).total_memory == 2**62 + 1


@pytest.mark.parametrize("total", [2**62, 2**62 + 1, 2**63 - 1])
def test_filter_totals_up_to_the_largest_bigint(total: int) -> None:
    assert filter_from_json({"total_memory": total}).total_memory == total


def test_filter_totals_past_a_bigint_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="total_memory: must be between 0 and "
                                             "9223372036854775807"):
        filter_from_json({"total_memory": 2**63})


def test_filter_json_carries_leased_ips_and_the_reclamation_window() -> None:
    screen = screening_filter(parse_group_spec({**spec(with_endpoints(("LEASED_IP", 7))),
                                                "reclamationWindow": 86400}))
    document = filter_to_json(screen)
    assert (document["totalLeasedIp"], document["reclamationWindow"]) == (1, 86400)
    assert filter_from_json(document) == screen
    with pytest.raises(InvalidRequest, match="reclamation_window: must be between 1"):
        filter_from_json({"reclamation_window": 0})
