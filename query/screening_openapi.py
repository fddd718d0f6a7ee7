"""The OpenAPI document of the two screening routes, which the FastAPI app does not serve.

The request bodies (`GROUP_SPEC_SCHEMA` of POST /v1/bid-screening, `FILTER_SCHEMA` of POST
/v1/prefilter), the answer of both (`ANSWER_SCHEMA`, written by `answers.answer_json`), the
`{"error", "message"}` answers, and `operation`, the path item of a route from its handler
and its query parameters (`screening_models`, which read them too). Pure data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hwledger.query.screening_models import Parameter

_QUANTITY = {
    "description": "Akash quantity: {\"val\": \"<decimal>\"} (or base64 of a decimal string), "
                   "or the bare value",
    "anyOf": [
        {"type": "object", "properties": {"val": {"type": ["string", "integer"]}},
         "required": ["val"]},
        {"type": "string"}, {"type": "integer"},
    ],
}
_ATTRIBUTES = {"type": "array", "items": {
    "type": "object", "properties": {"key": {"type": "string"}, "value": {"type": "string"}},
    "required": ["key", "value"]}}
_NAMES = {"type": "array", "items": {"type": "string"}}
GROUP_SPEC_SCHEMA: dict[str, Any] = {
    "title": "GroupSpec",
    "description": "Akash-style GroupSpec. GPU attribute keys look like "
                   "vendor/nvidia/model/h100/ram/80Gi/interface/sxm (value \"true\"); a storage "
                   "volume with attribute class=ram counts as memory; persistent=true volumes "
                   "need a class. The group needs one leased IP per distinct sequence number "
                   "of its LEASED_IP endpoints across all units. Every total (a quantity times "
                   "its count, summed over units) is at most 2^63-1.",
    "type": "object",
    "required": ["resources"],
    "properties": {
        "name": {"type": "string"},
        "reclamationWindow": {
            "type": "integer", "minimum": 1, "maximum": 2**63 - 1,
            "description": "seconds of notice the provider must give before reclaiming leased "
                           "capacity, at least (only providers offering a window this long "
                           "or longer); absent: no window asked for (reclamation_window is "
                           "accepted too)"},
        "requirements": {"type": "object", "properties": {
            "signedBy": {"type": "object", "properties": {"allOf": _NAMES, "anyOf": _NAMES}},
            "attributes": _ATTRIBUTES}},
        "resources": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["resource", "count"],
            "properties": {
                "count": {"type": "integer", "minimum": 1, "maximum": 10000},
                "resource": {"type": "object", "properties": {
                    "cpu": {"type": "object", "properties": {"units": _QUANTITY}},
                    "memory": {"type": "object", "properties": {"quantity": _QUANTITY}},
                    "gpu": {"type": "object", "properties": {"units": _QUANTITY,
                                                             "attributes": _ATTRIBUTES}},
                    "storage": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "quantity": _QUANTITY,
                        "attributes": _ATTRIBUTES}}},
                    "endpoints": {"type": "array", "items": {
                        "type": "object", "required": ["kind"], "properties": {
                            "kind": {"enum": ["SHARED_HTTP", "RANDOM_PORT", "LEASED_IP"]},
                            "sequenceNumber": {
                                "type": "integer", "minimum": 0, "maximum": 2**32 - 1,
                                "description": "the endpoint's number (sequence_number is "
                                               "accepted too; absent = 0); LEASED_IP "
                                               "endpoints sharing it are one IP"}}}},
                }},
            }}},
    },
}
_COUNT = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
FILTER_SCHEMA: dict[str, Any] = {
    "title": "BidScreeningFilter",
    "type": "object",
    "properties": {
        **{name: _COUNT for name in (
            "total_cpu", "total_memory", "total_gpu", "total_ephemeral", "total_persistent",
            "max_node_cpu", "max_node_memory", "max_node_gpu", "total_leased_ip")},
        "reclamation_window": {"type": ["integer", "null"], "minimum": 1,
                               "maximum": 2**63 - 1,
                               "description": "seconds; null or absent: none asked for"},
        "units": {"type": "array", "items": {"type": "object", "properties": {
            "gpu_tokens": _NAMES, "storage_classes": _NAMES}}},
        "signed_by": {"type": "object", "properties": {"all_of": _NAMES, "any_of": _NAMES}},
        "attributes": _ATTRIBUTES,
    },
}
_PLACED_UNIT = {
    "type": "object", "required": ["unit", "node", "count", "gpuSlots"],
    "properties": {
        "unit": {"type": "integer", "description": "index in resources[]"},
        "node": {"type": "string"},
        "count": {"type": "integer", "description": "replicas of the unit on this node"},
        "gpuSlots": {"type": "array", "items": {"type": "integer"},
                     "description": "the replicas' GPU slots in replica order, the same number "
                                    "per replica"}}}
_PLACEMENT = {"description": "bid screening with exact=true: each unit's replicas per node, "
                             "counted", "type": "array", "items": _PLACED_UNIT}
ANSWER_SCHEMA: dict[str, Any] = {
    "title": "ScreeningAnswer", "type": "object",
    "required": ["providers", "asOf", "truncated"],
    "properties": {
        "providers": {"type": "array", "items": {"type": "object", "properties": {
            "owner": {"type": "string"}, "hostUri": {"type": ["string", "null"]},
            "auditedBy": _NAMES, "gpuModels": _NAMES,
            "lastSeenAt": {"type": ["string", "null"]},
            "createdAt": {"type": ["string", "null"], "format": "date-time",
                          "description": "when the provider was first seen: the event time "
                                         "of its earliest own fact (snapshot, run, "
                                         "registration); null when it has only audits"},
            "location": {"type": ["string", "null"],
                         "description": "the location-region attribute: signed (the first "
                                        "auditor in auditedBy that signed it), else "
                                        "self-declared, else null"},
            "organization": {"type": ["string", "null"],
                             "description": "the organization attribute: signed first, "
                                            "else self-declared, else null"},
            "placement": _PLACEMENT}}},
        "asOf": {"type": "object"},
        "truncated": {"type": "boolean", "description": "more providers may follow: ask again "
                                                        "with `cursor`"},
        "cursor": {"type": ["string", "null"], "description": "where the next page starts "
                                                              "(null when not truncated or "
                                                              "not paged)"},
    },
}
ERROR_RESPONSE: dict[str, Any] = {
    "description": "bad input: {\"error\", \"message\"} naming the field",
    "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"},
                                         "message": {"type": "string"}}}}}}
_SCREENING_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {**ERROR_RESPONSE, "description": "body over 64 KiB"},
    415: {**ERROR_RESPONSE, "description": "Content-Type is not application/json"},
    422: {**ERROR_RESPONSE, "description": "bad input naming the field, or `too_costly`: the "
                                           "request needs more placement steps or a larger "
                                           "answer than the service allows (lower `limit`)"},
    503: {**ERROR_RESPONSE, "description": "`unavailable`: no database; `over_budget`: the time "
                                           "budget ran out (busy service or slow database), "
                                           "try again later"}}


def _body_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}


def operation(handler: Callable[..., Any], body: dict[str, Any],
              parameters: Iterable[Parameter[Any]]) -> dict[str, Any]:
    """The OpenAPI path item of a screening route served by `handler` (its name is the
    operation id, its docstring the description) taking `body` and the query `parameters`."""
    doc = (handler.__doc__ or "").strip()
    return {"post": {
        "summary": handler.__name__.replace("_", " ").capitalize(), "description": doc,
        "operationId": handler.__name__, "parameters": [p.document() for p in parameters],
        **_body_schema(body),
        "responses": {"200": {"description": "the candidates and `asOf`", "content": {
            "application/json": {"schema": ANSWER_SCHEMA}}}, **_SCREENING_RESPONSES}}}
