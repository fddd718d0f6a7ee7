"""The JSON schemas of the screening routes, bounded as their validators bound the input.

`GROUP_SPEC_SCHEMA` is the body of POST /v1/bid-screening (`aggregator.parse_group_spec`),
`FILTER_SCHEMA` the body of POST /v1/prefilter (`screening_filter.filter_from_json`), both with the
validators' bounds and defaults; `ANSWER_SCHEMA` is the answer of both
(`answers.answer_json`), `ERROR_SCHEMA` every `{"error", "message"}` answer. Pure data.
"""

from __future__ import annotations

from typing import Any

from pydantic.alias_generators import to_camel

from hwledger.query.aggregator import ENDPOINT_KINDS, MAX_COUNT
from hwledger.query.prefilter_conditions import TOTAL_COLUMNS
from hwledger.query.request_fields import (
    MAX_ITEMS,
    MAX_QUANTITY,
    MAX_RECLAMATION_WINDOW,
    MAX_TEXT,
    MAX_TOTAL,
)

_TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
_NAMES = {"type": "array", "maxItems": MAX_ITEMS, "items": _TEXT}
_ATTRIBUTES = {"type": "array", "maxItems": MAX_ITEMS, "items": {
    "type": "object", "required": ["key", "value"],
    "properties": {"key": {**_TEXT, "description": "a trailing `*` matches any last segment"},
                   "value": {"type": "string", "maxLength": MAX_TEXT}}}}
_QUANTITY = {
    "description": "Akash quantity: {\"val\": \"<decimal>\"} (or base64 of a decimal string), "
                   "or the bare value",
    "default": 0,
    "anyOf": [
        {"type": "object", "properties": {"val": {"type": ["string", "integer"]}},
         "required": ["val"]},
        {"type": "string"}, {"type": "integer", "minimum": 0, "maximum": MAX_QUANTITY},
    ],
}
_GPU_ATTRIBUTES = {"type": "array", "maxItems": MAX_ITEMS, "items": {
    "type": "object", "required": ["key"], "properties": {
        "key": {**_TEXT, "description": "vendor/<vendor>[/model/<model>[/ram/<ram>]"
                                        "[/interface/pcie|sxm]]: one GPU the unit accepts"},
        "value": {"type": "string", "pattern": "^[Tt][Rr][Uu][Ee]$", "default": "true"}}}}
_VOLUME = {"type": "object", "required": ["quantity"], "properties": {
    "name": {"type": "string"},
    "quantity": {**_QUANTITY, "description": "bytes (size is accepted too)"},
    "attributes": _ATTRIBUTES}}
_ENDPOINT = {"type": "object", "required": ["kind"], "properties": {
    "kind": {"enum": list(ENDPOINT_KINDS)},
    "sequenceNumber": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1, "default": 0,
                       "description": "the endpoint's number (sequence_number is accepted "
                                      "too); LEASED_IP endpoints sharing it are one IP"}}}
_RESOURCE_UNIT = {"type": "object", "required": ["resource"], "properties": {
    "count": {"type": "integer", "minimum": 1, "maximum": MAX_COUNT, "default": 1,
              "description": "replicas of the unit"},
    "resource": {"type": "object", "properties": {
        "cpu": {"type": "object", "properties": {
            "units": {**_QUANTITY, "description": "millicores"}}},
        "memory": {"type": "object", "properties": {
            "quantity": {**_QUANTITY, "description": "bytes (size is accepted too)"}}},
        "gpu": {"type": "object", "properties": {"units": _QUANTITY,
                                                 "attributes": _GPU_ATTRIBUTES}},
        "storage": {"type": "array", "maxItems": MAX_ITEMS, "items": _VOLUME},
        "endpoints": {"type": "array", "maxItems": MAX_ITEMS, "items": _ENDPOINT}}}}}
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
            "type": ["integer", "null"], "minimum": 1, "maximum": MAX_RECLAMATION_WINDOW,
            "description": "seconds of notice the provider must give before reclaiming leased "
                           "capacity, at least (only providers offering a window this long "
                           "or longer); null or absent: no window asked for "
                           "(reclamation_window is accepted too)"},
        "requirements": {"type": "object", "properties": {
            "signedBy": {"type": "object", "properties": {"allOf": _NAMES, "anyOf": _NAMES}},
            "attributes": _ATTRIBUTES}},
        "resources": {"type": "array", "minItems": 1, "maxItems": MAX_ITEMS,
                      "items": _RESOURCE_UNIT},
    },
}
_TOTAL = {"type": "integer", "minimum": 0, "maximum": MAX_TOTAL, "default": 0}
FILTER_SCHEMA: dict[str, Any] = {
    "title": "BidScreeningFilter",
    "description": "camelCase as the answers; each field is accepted in snake_case too "
                   "(total_cpu, units[].gpu_tokens, signed_by.all_of), as DESIGN writes them",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **{to_camel(name): _TOTAL for name, _ in TOTAL_COLUMNS},
        "reclamationWindow": {"type": ["integer", "null"], "minimum": 1,
                              "maximum": MAX_RECLAMATION_WINDOW,
                              "description": "seconds; null or absent: none asked for"},
        "units": {"type": "array", "maxItems": MAX_ITEMS, "items": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "gpuTokens": {**_NAMES, "description": "some GPU of one of these free"},
                "storageClasses": _NAMES,
                "gpuNodeTokens": {**_NAMES, "description":
                                  "some node has one of these free, e.g. nvidia/a100/80gi#8: "
                                  "8 free GPUs of one model named by the vendor, model or "
                                  "model/ram token, counts powers of two"}}}},
        "signedBy": {"type": "object", "additionalProperties": False,
                     "properties": {"allOf": _NAMES, "anyOf": _NAMES}},
        "attributes": _ATTRIBUTES,
    },
}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_PLACED_UNIT = {
    "type": "object", "required": ["unit", "node", "count", "gpuSlots"],
    "properties": {
        "unit": {"type": "integer", "description": "index in resources[]"},
        "node": {"type": "string"},
        "count": {"type": "integer", "description": "replicas of the unit on this node"},
        "gpuSlots": {"type": "array", "items": {"type": "integer"},
                     "description": "the replicas' GPU slots in replica order, the same number "
                                    "per replica"}}}
_PROVIDER = {
    "type": "object",
    "required": ["owner", "hostUri", "auditedBy", "gpuModels", "lastSeenAt", "createdAt",
                 "location", "organization"],
    "properties": {
        "owner": {"type": "string"}, "hostUri": {"type": ["string", "null"]},
        "auditedBy": _STRINGS, "gpuModels": {**_STRINGS, "description": "GPU tokens installed"},
        "lastSeenAt": _TIME,
        "createdAt": {**_TIME, "description": "when the provider was first seen: the event "
                                              "time of its earliest own fact (snapshot, run, "
                                              "registration); null when it has only audits"},
        "location": {"type": ["string", "null"],
                     "description": "the location-region attribute: signed (the first auditor "
                                    "in auditedBy that signed it), else self-declared, else "
                                    "null"},
        "organization": {"type": ["string", "null"],
                         "description": "the organization attribute: signed first, else "
                                        "self-declared, else null"},
        "placement": {"description": "bid screening with exact=true: each unit's replicas per "
                                     "node, counted", "type": "array", "items": _PLACED_UNIT}}}
_AS_OF = {
    "type": "object", "required": ["schema", "position", "lastEventAt", "partitions"],
    "properties": {
        "schema": {"type": "string", "description": "the schema read (the active one)"},
        "position": {"type": "integer", "minimum": 0,
                     "description": "the projection position: the sum of the partitions' next "
                                    "offsets"},
        "lastEventAt": {**_TIME, "description": "the newest event time projected (null before "
                                                "the first batch)"},
        "partitions": {"type": "array", "items": {
            "type": "object", "required": ["projection", "topic", "partition", "nextOffset"],
            "properties": {"projection": {"type": "string"}, "topic": {"type": "string"},
                           "partition": {"type": "integer"},
                           "nextOffset": {"type": "integer"}}}},
        "minPositionReached": {"type": "boolean",
                               "description": "with minPosition: whether the projection "
                                              "reached it within the wait"}}}
ANSWER_SCHEMA: dict[str, Any] = {
    "title": "ScreeningAnswer", "type": "object",
    "required": ["providers", "asOf", "truncated", "cursor"],
    "properties": {
        "providers": {"type": "array", "items": _PROVIDER,
                      "description": "ordered by owner"},
        "asOf": _AS_OF,
        "truncated": {"type": "boolean", "description": "more providers may follow: ask again "
                                                        "with `cursor`"},
        "cursor": {"type": ["string", "null"], "description": "where the next page starts "
                                                              "(null when not truncated or "
                                                              "not paged)"},
        "filter": {**FILTER_SCHEMA, "description": "explain=true: the computed filter"},
        "sql": {"type": "string", "description": "explain=true: the prefilter's SQL"},
        "rejected": {"type": "array", "description": "explain=true: the candidates the "
                                                     "bin-packer could not place, and why",
                     "items": {"type": "object", "required": ["owner", "reason"],
                               "properties": {"owner": {"type": "string"},
                                              "reason": {"type": "string"}}}},
        "cost": {"type": "object", "description": "explain=true with exact=true: the "
                                                  "bin-packer's work",
                 "required": ["candidatesExamined", "batches", "placementSteps"],
                 "properties": {name: {"type": "integer", "minimum": 0} for name in (
                     "candidatesExamined", "batches", "placementSteps")}},
    },
}
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error", "type": "object", "required": ["error", "message"],
    "properties": {"error": {"type": "string", "description": "the kind, e.g. invalid_request"},
                   "message": {"type": "string", "description": "what was wrong, naming the "
                                                               "field"}}}
