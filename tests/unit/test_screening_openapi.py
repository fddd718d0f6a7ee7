"""The screening routes' OpenAPI document agrees with their validators: the query parameters'
documented defaults and bounds are the ones read, the bodies' defaults and required fields are
the aggregator's, and every example is valid under its own schema."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest

from hwledger.query.aggregator import parse_group_spec
from hwledger.query.request_fields import InvalidRequest
from hwledger.query.screening_filter import filter_from_json, filter_to_json, screening_filter
from hwledger.query.screening_http import SCREENING_PATHS
from hwledger.query.screening_models import (
    BidScreeningQuery,
    Flag,
    Integer,
    InvalidParameter,
    ScreeningQuery,
)
from hwledger.query.screening_openapi import (
    BID_SCREENING_ANSWER_EXAMPLE,
    FILTER_EXAMPLE,
    GROUP_SPEC_EXAMPLE,
    PREFILTER_ANSWER_EXAMPLE,
)
from hwledger.query.screening_schemas import ANSWER_SCHEMA, FILTER_SCHEMA, GROUP_SPEC_SCHEMA

UNIT = GROUP_SPEC_SCHEMA["properties"]["resources"]["items"]
RESOURCE = UNIT["properties"]["resource"]["properties"]


def valid(schema: dict[str, Any], document: Any) -> bool:
    return bool(jsonschema_rs.validator_for(schema).is_valid(document))


@pytest.mark.parametrize(("schema", "example"), [
    (GROUP_SPEC_SCHEMA, GROUP_SPEC_EXAMPLE), (FILTER_SCHEMA, FILTER_EXAMPLE),
    (ANSWER_SCHEMA, BID_SCREENING_ANSWER_EXAMPLE), (ANSWER_SCHEMA, PREFILTER_ANSWER_EXAMPLE)])
def test_every_example_is_valid_under_its_schema(schema: dict[str, Any],
                                                 example: dict[str, Any]) -> None:
    assert valid(schema, example)


def test_the_request_examples_pass_the_validators() -> None:
    screen = screening_filter(parse_group_spec(GROUP_SPEC_EXAMPLE))
    assert screen.total_gpu == 2 and screen.signed_by_any_of == ("akash1auditor",)
    assert filter_from_json(FILTER_EXAMPLE).units[0].gpu_tokens == ("nvidia/h100",)


def test_a_computed_filter_is_valid_under_the_filter_schema() -> None:
    """`explain` shows the filter in the form POST /v1/prefilter takes."""
    assert valid(FILTER_SCHEMA, filter_to_json(screening_filter(
        parse_group_spec(GROUP_SPEC_EXAMPLE))))


def test_count_is_optional_and_defaults_as_documented() -> None:
    """The validator defaults a unit's `count`, so the schema must not require it."""
    assert UNIT["required"] == ["resource"]
    bare = parse_group_spec({"resources": [{"resource": {}}]})
    assert bare.units[0].count == UNIT["properties"]["count"]["default"]
    with pytest.raises(InvalidRequest, match=r"resources\[0\]\.resource"):
        parse_group_spec({"resources": [{"count": 1}]})
    with pytest.raises(InvalidRequest, match="resources"):
        parse_group_spec({})


def test_the_body_defaults_are_the_validators() -> None:
    endpoint = RESOURCE["endpoints"]["items"]["properties"]
    gpu_attribute = RESOURCE["gpu"]["properties"]["attributes"]["items"]["properties"]
    assert RESOURCE["cpu"]["properties"]["units"]["default"] == 0
    assert RESOURCE["gpu"]["properties"]["units"]["default"] == 0
    documented = {"resources": [{"resource": {
        "cpu": {"units": 0}, "memory": {"quantity": 0},
        "gpu": {"units": {"val": "1"}, "attributes": [
            {"key": "vendor/nvidia", "value": gpu_attribute["value"]["default"]}]},
        "endpoints": [{"kind": "LEASED_IP", "sequenceNumber": endpoint["sequenceNumber"][
            "default"]}]}}]}
    omitted = {"resources": [{"resource": {
        "cpu": {}, "memory": {}, "gpu": {"units": {"val": "1"}, "attributes": [
            {"key": "vendor/nvidia"}]}, "endpoints": [{"kind": "LEASED_IP"}]}}]}
    assert parse_group_spec(documented) == parse_group_spec(omitted)
    totals = [name for name, field in FILTER_SCHEMA["properties"].items()
              if field.get("default") == 0]
    assert len(totals) == 9
    assert filter_from_json({}) == filter_from_json(dict.fromkeys(totals, 0))


def test_the_filter_schema_refuses_unknown_fields_as_the_validator_does() -> None:
    assert not valid(FILTER_SCHEMA, {"total_gpus": 1})
    with pytest.raises(InvalidRequest, match="total_gpus: unknown field"):
        filter_from_json({"total_gpus": 1})


@pytest.mark.parametrize("model", [ScreeningQuery, BidScreeningQuery])
def test_the_documented_parameter_defaults_are_the_ones_read(model: Any) -> None:
    read = model.parse({})
    options = getattr(read, "options", read)
    assert (options.explain, options.limit, options.min_position, options.after,
            options.paged) == (False, 100, None, None, False)
    for parameter in model.PARAMETERS:
        assert parameter.parse({}) == parameter.default
        schema = parameter.document()["schema"]
        assert schema.get("default") == parameter.default or (
            "default" not in schema and parameter.default is None)


@pytest.mark.parametrize("parameter", [p for p in BidScreeningQuery.PARAMETERS
                                       if isinstance(p, Integer)], ids=lambda p: p.name)
def test_the_documented_bounds_are_the_ones_read(parameter: Integer) -> None:
    schema = parameter.document()["schema"]
    low, high = schema["minimum"], schema["maximum"]
    assert parameter.parse({parameter.name: str(low)}) == low
    assert parameter.parse({parameter.name: str(high)}) == high
    for outside in (low - 1, high + 1):
        with pytest.raises(InvalidParameter, match=rf"query\.{parameter.name}: must be"):
            parameter.parse({parameter.name: str(outside)})


def test_flags_read_what_they_document() -> None:
    flags = [p for p in BidScreeningQuery.PARAMETERS if isinstance(p, Flag)]
    assert {p.name for p in flags} == {"exact", "explain", "paged"}
    for flag in flags:
        assert flag.document()["schema"] == {"type": "boolean", "default": False}
        assert flag.parse({flag.name: " Yes"}) is True
        with pytest.raises(InvalidParameter, match=rf"query\.{flag.name}: expected a boolean"):
            flag.parse({flag.name: "maybe"})


def test_each_operation_documents_its_parameters_body_and_answer() -> None:
    for path, model, body in (("/v1/bid-screening", BidScreeningQuery, GROUP_SPEC_SCHEMA),
                              ("/v1/prefilter", ScreeningQuery, FILTER_SCHEMA)):
        operation = SCREENING_PATHS[path]["post"]
        assert [p["name"] for p in operation["parameters"]] == [
            p.name for p in model.PARAMETERS]
        assert operation["requestBody"]["content"]["application/json"]["schema"] is body
        answer = operation["responses"]["200"]["content"]["application/json"]
        assert answer["schema"] is ANSWER_SCHEMA and valid(ANSWER_SCHEMA, answer["example"])
