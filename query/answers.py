"""A screening answer: what it holds (`Answer`, its `AsOf`) and its JSON document.

`Answer` is what `QueryService.screen` returns: the candidates as JSON text written by
Postgres, the projection position they were read at, and what `explain` shows (the filter,
the prefilter, the bin-packer's rejections and work). `answer_json` writes the HTTP answer
(`screening_openapi.ANSWER_SCHEMA`) around that text without parsing it. Pure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from hwledger.query.cursor import encode_cursor
from hwledger.query.fleet import iso
from hwledger.query.placement_run import ExactWork
from hwledger.query.prefilter_sql import Prefilter
from hwledger.query.repository import compiled
from hwledger.query.screening_filter import BidScreeningFilter, filter_to_json


@dataclass(frozen=True)
class AsOf:
    """Where the projection stood when an answer was read: the sum of the next offsets, the
    newest event time, each partition's next offset, and whether `minPosition` was reached."""

    position: int
    last_event_at: datetime | None
    partitions: tuple[tuple[str, str, int, int], ...]
    min_position_reached: bool | None = None

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "position": self.position,
            "lastEventAt": iso(self.last_event_at),
            "partitions": [{"projection": p, "topic": t, "partition": n, "nextOffset": o}
                           for p, t, n, o in self.partitions],
        }
        if self.min_position_reached is not None:
            found["minPositionReached"] = self.min_position_reached
        return found


def as_of_from(position: Any, last_event_at: datetime | None, partitions: Any) -> AsOf:
    """`partitions` is the JSON text of [[projection, topic, partition, next_offset], ...]."""
    return AsOf(int(position), last_event_at,
                tuple((str(p), str(t), int(n), int(o)) for p, t, n, o in json.loads(partitions)))


@dataclass(frozen=True)
class Answer:
    """`providers_json` is the JSON array of the answer's providers ({"owner", "hostUri",
    "auditedBy", "gpuModels", "lastSeenAt", "createdAt", "location", "organization",
    "placement"?}, ordered by owner) as text. `truncated`: more providers may follow
    (candidates, or with `exact` placeable ones, not examined yet); then `after` is where the
    next page starts (the cursor's owner). `candidates` counts the prefilter's providers the
    answer started from (with `exact`, those examined: the placed ones and the `rejected`
    ones), for the service's metrics."""

    schema: str
    as_of: AsOf
    providers_json: str
    screen: BidScreeningFilter
    prefilter: Prefilter
    rejected: tuple[tuple[str, str], ...] = ()
    truncated: bool = False
    candidates: int = 0
    after: str | None = None
    work: ExactWork | None = None

    def providers(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = orjson.loads(self.providers_json)
        return found


def answer_json(answer: Answer, explain: bool) -> bytes:
    """The answer's JSON document; the providers' JSON text goes in as it is."""
    found: dict[str, Any] = {
        "providers": orjson.Fragment(answer.providers_json),
        "asOf": {"schema": answer.schema, **answer.as_of.to_json()},
        "truncated": answer.truncated,
        "cursor": None if answer.after is None else encode_cursor(answer.after),
    }
    if explain:
        found["filter"] = filter_to_json(answer.screen)
        found["sql"] = compiled(answer.prefilter.statement)[0]
        found["rejected"] = [{"owner": o, "reason": r} for o, r in answer.rejected]
        if answer.work is not None:
            found["cost"] = answer.work.to_json()
    return orjson.dumps(found)
