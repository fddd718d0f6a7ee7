"""The OpenAPI operations of the two screening routes, which the FastAPI app does not serve.

`operation` writes a route's path item from its handler (name and docstring), its query
parameters (`screening_models`, which read them too), its body schema and the answer schema
(`screening_schemas`), with an example request and answer each, and the error answers.
Pure data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hwledger.query.cursor import encode_cursor
from hwledger.query.screening_models import Parameter
from hwledger.query.screening_schemas import ANSWER_SCHEMA, ERROR_SCHEMA

GROUP_SPEC_EXAMPLE: dict[str, Any] = {
    "resources": [{"count": 2, "resource": {
        "cpu": {"units": {"val": "8000"}}, "memory": {"quantity": {"val": "68719476736"}},
        "gpu": {"units": {"val": "1"}, "attributes": [
            {"key": "vendor/nvidia/model/h100/ram/80Gi", "value": "true"}]},
        "storage": [{"quantity": {"val": "107374182400"}}]}}],
    "requirements": {"signedBy": {"anyOf": ["akash1auditor"]}}}
FILTER_EXAMPLE: dict[str, Any] = {
    "totalCpu": 16000, "totalGpu": 2, "maxNodeGpu": 1,
    "units": [{"gpuTokens": ["nvidia/h100"], "storageClasses": []}],
    "signedBy": {"allOf": [], "anyOf": ["akash1auditor"]}}

_AS_OF_EXAMPLE = {
    "schema": "hwledger", "position": 48213, "lastEventAt": "2026-12-03T10:14:58.120Z",
    "partitions": [{"projection": "read_model", "topic": "hwledger.events", "partition": n,
                    "nextOffset": offset} for n, offset in ((0, 24100), (1, 24113))]}
_PROVIDER_EXAMPLE = {
    "owner": "akash1provider-a", "hostUri": "https://provider-a.example.com:8443",
    "auditedBy": ["akash1auditor"], "gpuModels": ["nvidia", "nvidia/h100"],
    "lastSeenAt": "2026-12-03T10:14:51.000Z", "createdAt": "2026-06-01T08:00:00.000Z",
    "location": "eu-west", "organization": "Example Compute"}
PREFILTER_ANSWER_EXAMPLE: dict[str, Any] = {
    "providers": [_PROVIDER_EXAMPLE], "asOf": _AS_OF_EXAMPLE, "truncated": False,
    "cursor": None}
BID_SCREENING_ANSWER_EXAMPLE: dict[str, Any] = {
    "providers": [{**_PROVIDER_EXAMPLE, "placement": [
        {"unit": 0, "node": "node-1", "count": 1, "gpuSlots": [0]},
        {"unit": 0, "node": "node-2", "count": 1, "gpuSlots": [3]}]}],
    "asOf": _AS_OF_EXAMPLE, "truncated": True, "cursor": encode_cursor("akash1provider-a")}

ERROR_RESPONSE: dict[str, Any] = {
    "description": "bad input: {\"error\", \"message\"} naming the field",
    "content": {"application/json": {"schema": ERROR_SCHEMA}}}
_SCREENING_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {**ERROR_RESPONSE, "description": "body over 64 KiB"},
    415: {**ERROR_RESPONSE, "description": "Content-Type is not application/json"},
    422: {**ERROR_RESPONSE, "description": "bad input naming the field, or `too_costly`: the "
                                           "request needs more placement steps or a larger "
                                           "answer than the service allows (lower `limit`)"},
    503: {**ERROR_RESPONSE, "description": "`unavailable`: no database; `over_budget`: the time "
                                           "budget ran out (busy service or slow database), "
                                           "try again later"}}


def _json(schema: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema, "example": example}}


def operation(handler: Callable[..., Any], parameters: Iterable[Parameter[Any]],
              body: dict[str, Any], body_example: dict[str, Any],
              answer_example: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI path item of a screening route served by `handler` (its name is the
    operation id, its docstring the description) taking the query `parameters` and `body`."""
    doc = (handler.__doc__ or "").strip()
    return {"post": {
        "summary": handler.__name__.replace("_", " ").capitalize(), "description": doc,
        "operationId": handler.__name__, "parameters": [p.document() for p in parameters],
        "requestBody": {"required": True, "content": _json(body, body_example)},
        "responses": {"200": {"description": "the candidates and `asOf`",
                              "content": _json(ANSWER_SCHEMA, answer_example)},
                      **_SCREENING_RESPONSES}}}
