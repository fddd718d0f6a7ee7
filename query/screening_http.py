"""The screening routes as plain ASGI: POST /v1/bid-screening and POST /v1/prefilter.

The two screening routes are a bid scheduler's hot path, so `screening_routes` serves them as
plain ASGI in front of the FastAPI app, which serves everything else: a screening request
costs its body, one statement and the answer, without the framework's per-request middleware,
routing and parameter resolution (docs/adr/0035-plain-asgi-screening-routes.md).

Bodies are read raw (at most 64 KiB, else 413; Content-Type application/json, else 415) and
validated by the aggregator, the query parameters by `screening_models`, so every bad input
gets 422 `{"error", "message"}` naming the field. `FAILURES` maps the screening's errors (bad
input, a request too costly by its shape, database trouble or a spent time budget) to their
status and `error`; a bug is 500 `internal_error`. `SCREENING_PATHS` documents both routes
in the app's OpenAPI document (`screening_openapi`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl

import orjson

from hwledger.query.aggregator import parse_group_spec
from hwledger.query.answers import Answer, answer_json
from hwledger.query.asgi import ASGIApp, Receive, Scope, Send
from hwledger.query.limits import BudgetExceeded, TooCostly
from hwledger.query.request_fields import InvalidRequest
from hwledger.query.screening_filter import filter_from_json
from hwledger.query.screening_models import BidScreeningQuery, InvalidParameter, ScreeningQuery
from hwledger.query.screening_openapi import (
    BID_SCREENING_ANSWER_EXAMPLE,
    FILTER_EXAMPLE,
    GROUP_SPEC_EXAMPLE,
    PREFILTER_ANSWER_EXAMPLE,
    operation,
)
from hwledger.query.screening_schemas import FILTER_SCHEMA, GROUP_SPEC_SCHEMA
from hwledger.query.service import QueryService, Unavailable

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024



class BodyTooLarge(Exception):
    def __init__(self) -> None:
        super().__init__(f"body: larger than {MAX_BODY_BYTES} bytes")


class UnsupportedMediaType(Exception):
    def __init__(self, content_type: str | None) -> None:
        got = "none" if content_type is None else repr(content_type)
        super().__init__(f"body: Content-Type must be application/json, got {got}")


class Disconnected(Exception):
    """The client went away before its request body arrived."""


UNAVAILABLE_MESSAGE = "the database cannot answer right now; the service log has the cause"
"""A 503's message: never the database's own words, which may name its address."""

FAILURES: dict[type[Exception], tuple[int, str]] = {
    InvalidRequest: (422, "invalid_request"), InvalidParameter: (422, "invalid_parameter"),
    TooCostly: (422, "too_costly"), BodyTooLarge: (413, "body_too_large"),
    UnsupportedMediaType: (415, "unsupported_media_type"), Unavailable: (503, "unavailable"),
    BudgetExceeded: (503, "over_budget"),
}
"""Bad input, too much work and database trouble: the HTTP status and `error` of the answer."""

INTERNAL_ERROR = orjson.dumps({"error": "internal_error",
                               "message": "the service failed; the cause is in its log"})
"""The 500 answer of a bug (the app raised), written in the one error shape all the same."""


def failure(exc: Exception) -> tuple[int, bytes]:
    """The status and `{"error", "message"}` body of one of the FAILURES."""
    status, kind = next(FAILURES[c] for c in type(exc).__mro__ if c in FAILURES)
    message = str(exc)
    if isinstance(exc, Unavailable):
        log.warning("database unavailable: %s", exc)
        message = UNAVAILABLE_MESSAGE
    return status, orjson.dumps({"error": kind, "message": message})


def check_json_media_type(content_type: bytes | None) -> None:
    """UnsupportedMediaType unless the Content-Type is application/json (parameters allowed)."""
    text = None if content_type is None else content_type.decode("latin-1")
    if text is None or text.partition(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(text)


async def read_body(scope: Scope, receive: Receive) -> bytes:
    """The request body, refusing more than MAX_BODY_BYTES before reading it all, and then any
    Content-Type but JSON."""
    headers = dict(scope["headers"])
    declared = headers.get(b"content-length", b"")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge
    chunks = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunks.extend(message.get("body", b""))
        if len(chunks) > MAX_BODY_BYTES:
            raise BodyTooLarge
        if not message.get("more_body", False):
            check_json_media_type(headers.get(b"content-type"))
            return bytes(chunks)


def parse_json(body: bytes) -> Any:
    """The body as JSON; InvalidRequest (naming `body`) when it is not."""
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidRequest("body", "is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest("body", f"malformed JSON at line {exc.lineno} column "
                                     f"{exc.colno}: {exc.msg}") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise InvalidRequest("body", f"unusable JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest("body", "JSON nested too deeply") from None


@dataclass(frozen=True)
class Screened:
    """A screening route's answer, whether the bin-packer ran, and whether to explain."""

    answer: Answer
    exact: bool
    explain: bool


async def bid_screening(service: QueryService, query: Mapping[str, str], body: bytes
                        ) -> Screened:
    """Candidates for a GroupSpec; `exact=true` keeps only placeable ones (with placement)."""
    asked = BidScreeningQuery.parse(query)
    options = asked.options
    group = parse_group_spec(parse_json(body))
    answer = await service.bid_screening(group, exact=asked.exact, limit=options.limit,
                                         min_position=options.min_position,
                                         after=options.after, paged=options.paged,
                                         packing=asked.packing)
    return Screened(answer, asked.exact, options.explain)


async def prefilter(service: QueryService, query: Mapping[str, str], body: bytes) -> Screened:
    """Candidates for a BidScreeningFilter (the prefilter alone); `exact` does not apply."""
    options = ScreeningQuery.parse(query)
    screen = filter_from_json(parse_json(body))
    answer = await service.screen(screen, limit=options.limit,
                                  min_position=options.min_position, after=options.after,
                                  paged=options.paged)
    return Screened(answer, False, options.explain)


Handler = Callable[[QueryService, Mapping[str, str], bytes], Awaitable[Screened]]
SCREENING: dict[str, Handler] = {"/v1/bid-screening": bid_screening, "/v1/prefilter": prefilter}

SCREENING_PATHS = {
    "/v1/bid-screening": operation(bid_screening, BidScreeningQuery.PARAMETERS,
                                   GROUP_SPEC_SCHEMA, GROUP_SPEC_EXAMPLE,
                                   BID_SCREENING_ANSWER_EXAMPLE),
    "/v1/prefilter": operation(prefilter, ScreeningQuery.PARAMETERS, FILTER_SCHEMA,
                               FILTER_EXAMPLE, PREFILTER_ANSWER_EXAMPLE),
}
"""The OpenAPI path items of the screening routes, which FastAPI does not serve."""


class ScreeningObserver(Protocol):
    """Where each screening answer is counted (the app's `HttpMetrics`)."""

    def observe_screening(self, route: str, screened: Screened) -> None: ...


_JSON = [(b"content-type", b"application/json")]


async def _respond(send: Send, status: int, body: bytes,
                   headers: list[tuple[bytes, bytes]] = _JSON) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def screening_routes(service: QueryService, app: ASGIApp, metrics: ScreeningObserver) -> ASGIApp:
    """SCREENING as plain ASGI in front of `app` (which gets every other request); each
    answer goes to `metrics.observe_screening`."""
    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        handler = SCREENING.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None:
            await app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _respond(send, 405, orjson.dumps({
                "error": "method_not_allowed", "message": f"{scope['path']}: use POST"}),
                [*_JSON, (b"allow", b"POST")])
            return
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"),
                               keep_blank_values=True))
        try:
            screened = await handler(service, query, await read_body(scope, receive))
            answer = answer_json(screened.answer, screened.explain)
        except Disconnected:
            return
        except tuple(FAILURES) as exc:
            await _respond(send, *failure(exc))
            return
        except Exception:
            log.exception("%s failed", scope["path"])
            await _respond(send, 500, INTERNAL_ERROR)
            return
        metrics.observe_screening(scope["path"], screened)
        await _respond(send, 200, answer)
    return serve
