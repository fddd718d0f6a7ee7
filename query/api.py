"""The HTTP API of DESIGN section 6: bid screening, prefilter, detail reads, health.

The two screening routes are a bid scheduler's hot path, so `screening_routes` serves them as
plain ASGI in front of the FastAPI app, which serves everything else, /docs and the OpenAPI
document (where the screening operations are described by hand): a screening request costs
its body, one statement and the answer, without the framework's per-request middleware,
routing and parameter resolution
(docs/adr/0035-plain-asgi-screening-routes.md).

Bodies are read raw (at most 64 KiB, else 413; Content-Type application/json, else 415) and
validated by the aggregator, so every bad body gets 422 `{"error", "message"}` naming the
field. Every other error answer has the same shape: query-parameter errors, unknown routes
(404), wrong methods (405), a request too costly by its shape (422 `too_costly`), database
trouble or a spent time budget (503), a bug (500 `internal_error`) and the HTTP parser's 400s
(`JsonErrorsProtocol`, the uvicorn protocol `hwledger serve` runs).

/metrics serves `http_metrics.HttpMetrics`; the read routes' answers come from `reads.Reads`,
described in the OpenAPI document by `read_models` (response schemas with examples).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hwledger.query import read_models
from hwledger.query.aggregator import (
    InvalidRequest,
    filter_from_json,
    filter_to_json,
    parse_group_spec,
)
from hwledger.query.asgi import ASGIApp, Receive, Scope, Send
from hwledger.query.binpacker import Packing
from hwledger.query.cursor import InvalidCursor, decode_cursor, encode_cursor
from hwledger.query.fleet import FleetFilter
from hwledger.query.http_metrics import HttpMetrics
from hwledger.query.reads import AmbiguousRun, Reads
from hwledger.query.repository import compiled
from hwledger.query.service import (
    DEFAULT_LIMIT,
    Answer,
    BudgetExceeded,
    QueryService,
    TooCostly,
    Unavailable,
)
from hwledger.schemas.prometheus import scrape_registry, worker_exited

log = logging.getLogger("hwledger.query")

MAX_BODY_BYTES = 64 * 1024
MAX_LIMIT = 10_000
MAX_PROVIDER_LIST = 1000
CONSOLE = FilePath(__file__).with_name("console")
"""The fleet console's static page (index.html, console.js, console.css), served at `/`."""
TOKEN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]+$"



class BodyTooLarge(Exception):
    def __init__(self) -> None:
        super().__init__(f"body: larger than {MAX_BODY_BYTES} bytes")


class UnsupportedMediaType(Exception):
    def __init__(self, content_type: str | None) -> None:
        got = "none" if content_type is None else repr(content_type)
        super().__init__(f"body: Content-Type must be application/json, got {got}")


class InvalidParameter(Exception):
    """A query parameter that cannot be used; the message names it (`query.<name>: ...`)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"query.{name}: {message}")


class Disconnected(Exception):
    """The client went away before its request body arrived."""


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
_ERROR = {"description": "bad input: {\"error\", \"message\"} naming the field",
          "content": {"application/json": {"schema": {
              "type": "object", "properties": {"error": {"type": "string"},
                                               "message": {"type": "string"}}}}}}
_SCREENING_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {**_ERROR, "description": "body over 64 KiB"},
    415: {**_ERROR, "description": "Content-Type is not application/json"},
    422: {**_ERROR, "description": "bad input naming the field, or `too_costly`: the request "
                                   "needs more placement steps or a larger answer than the "
                                   "service allows (lower `limit`)"},
    503: {**_ERROR, "description": "`unavailable`: no database; `over_budget`: the time budget "
                                   "ran out (busy service or slow database), try again later"}}


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

log = logging.getLogger(__name__)

HTTP_ERRORS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
"""The `error` of the framework's answers by status."""


def failure(exc: Exception) -> tuple[int, bytes]:
    """The status and `{"error", "message"}` body of one of the FAILURES."""
    status, kind = next(FAILURES[c] for c in type(exc).__mro__ if c in FAILURES)
    message = str(exc)
    if isinstance(exc, Unavailable):
        log.warning("database unavailable: %s", exc)
        message = UNAVAILABLE_MESSAGE
    return status, orjson.dumps({"error": kind, "message": message})


def error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": kind, "message": message}, status_code=status)


def _body_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}


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


_BOOLEANS = {**dict.fromkeys(("true", "1", "yes", "on", "t", "y"), True),
             **dict.fromkeys(("false", "0", "no", "off", "f", "n"), False)}


@dataclass(frozen=True)
class ScreeningQuery:
    """The screening routes' query parameters but bid screening's own `exact` and `packing`,
    read by hand (`SCREENING_PATHS` documents them); a bad value is InvalidParameter."""

    explain: bool = False
    limit: int = DEFAULT_LIMIT
    min_position: int | None = None
    after: str | None = None
    paged: bool = False

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> ScreeningQuery:
        limit = _bounded(query.get("limit"), "limit", 1, MAX_LIMIT)
        return cls(explain=_flag(query.get("explain"), "explain"),
                   limit=DEFAULT_LIMIT if limit is None else limit,
                   min_position=_bounded(query.get("minPosition"), "minPosition", 0, 2**62),
                   after=_cursor(query.get("cursor")), paged=_flag(query.get("paged"), "paged"))


def _cursor(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return decode_cursor(value)
    except InvalidCursor as exc:
        raise InvalidParameter("cursor", str(exc)) from None


def _packing(value: str | None) -> Packing:
    if value is None:
        return Packing.SEARCH
    try:
        return Packing(value.strip().lower())
    except ValueError:
        raise InvalidParameter("packing", f"expected one of {', '.join(Packing)}") from None


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    try:
        return _BOOLEANS[value.strip().lower()]
    except KeyError:
        raise InvalidParameter(name, "expected a boolean (true or false)") from None


def _bounded(value: str | None, name: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise InvalidParameter(name, "expected an integer") from None
    if not low <= number <= high:
        raise InvalidParameter(name, f"must be between {low} and {high}")
    return number


def _parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


_EXPLAIN = _parameter("explain", "add the computed filter, SQL and rejections",
                      {"type": "boolean", "default": False})
_LIMIT = _parameter("limit", "most providers returned",
                    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                     "default": DEFAULT_LIMIT})
_MIN_POSITION = _parameter("minPosition",
                           "wait (bounded) until the projection position reaches this value",
                           {"type": "integer", "minimum": 0, "maximum": 2**62})
_EXACT = _parameter("exact", "run the bin-packer and return the first `limit` placeable "
                             "providers (by owner), reading candidates until that many are "
                             "placed or none are left", {"type": "boolean", "default": False})
_PACKING = _parameter("packing", "with exact=true: `search` tries the other unit orders and GPU "
                                 "models a unit could freeze when Akash's greedy rule fails; "
                                 "`greedy` is Akash's rule alone",
                      {"type": "string", "enum": list(Packing), "default": Packing.SEARCH})
_CURSOR = _parameter("cursor", "the `cursor` of the previous answer: the next page",
                     {"type": "string"})
_PAGED = _parameter("paged", "list the candidates by owner, so that a truncated answer carries "
                             "the `cursor` of the next page (implied by `cursor` and by "
                             "exact=true; without it the first `limit` matches the scan finds "
                             "are returned, which is faster, and `cursor` is null)",
                    {"type": "boolean", "default": False})


@dataclass(frozen=True)
class Screened:
    """A screening route's answer, whether the bin-packer ran, and whether to explain."""

    answer: Answer
    exact: bool
    explain: bool


async def bid_screening(service: QueryService, query: Mapping[str, str], body: bytes
                        ) -> Screened:
    """Candidates for a GroupSpec; `exact=true` keeps only placeable ones (with placement)."""
    exact = _flag(query.get("exact"), "exact")
    packing = _packing(query.get("packing"))
    options = ScreeningQuery.parse(query)
    group = parse_group_spec(parse_json(body))
    answer = await service.bid_screening(group, exact=exact, limit=options.limit,
                                         min_position=options.min_position,
                                         after=options.after, paged=options.paged,
                                         packing=packing)
    return Screened(answer, exact, options.explain)


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


def _operation(handler: Handler, body: dict[str, Any], *parameters: dict[str, Any]
               ) -> dict[str, Any]:
    doc = (handler.__doc__ or "").strip()
    return {"post": {
        "summary": handler.__name__.replace("_", " ").capitalize(), "description": doc,
        "operationId": handler.__name__, "parameters": list(parameters), **_body_schema(body),
        "responses": {"200": {"description": "the candidates and `asOf`", "content": {
            "application/json": {"schema": ANSWER_SCHEMA}}}, **_SCREENING_RESPONSES}}}


SCREENING_PATHS = {
    "/v1/bid-screening": _operation(bid_screening, GROUP_SPEC_SCHEMA, _EXACT, _PACKING,
                                    _EXPLAIN, _LIMIT, _PAGED, _CURSOR, _MIN_POSITION),
    "/v1/prefilter": _operation(prefilter, FILTER_SCHEMA, _EXPLAIN, _LIMIT, _PAGED, _CURSOR,
                                _MIN_POSITION),
}
"""The OpenAPI path items of the screening routes, which FastAPI does not serve."""

_JSON = [(b"content-type", b"application/json")]


async def _respond(send: Send, status: int, body: bytes,
                   headers: list[tuple[bytes, bytes]] = _JSON) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def screening_routes(service: QueryService, app: ASGIApp, metrics: HttpMetrics) -> ASGIApp:
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


def documented(model: type[BaseModel], *errors: int) -> dict[str, Any]:
    """A read route's `app.get` keywords: its answer's `model` as the 200 schema, the error
    answers of `errors`, and 503 `unavailable`."""
    return {"response_model": model, "responses": {
        **{status: _ERROR for status in errors},
        503: {**_ERROR, "description": "`unavailable`: the database or the active schema "
                                       "cannot answer"}}}


def with_examples(document: dict[str, Any], routes: Sequence[BaseRoute]) -> None:
    """Each read route's 200 answer in `document` with its model's example, written after
    FastAPI built the document (it drops every null, the example's included)."""
    for route in routes:
        model = getattr(route, "response_model", None)
        if not isinstance(route, APIRoute) or model is None:
            continue
        [example] = model.model_json_schema()["examples"]
        document["components"]["schemas"][model.__name__]["examples"] = [example]
        for method in route.methods or ():
            answer = document["paths"][route.path_format][method.lower()]["responses"]["200"]
            answer["content"]["application/json"]["example"] = example


def create_app(service: QueryService) -> ASGIApp:
    """The ASGI app over one QueryService: the screening routes, then the FastAPI app."""
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        worker_exited()
        await service.connections.close()

    app = FastAPI(title="hwledger query service", version="1", lifespan=lifespan,
                  description="Which providers could host this deployment request?")
    metrics = HttpMetrics()
    reads = Reads(service)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version,
                                   description=app.description, routes=app.routes)
            with_examples(document, app.routes)
            document["paths"] = {**SCREENING_PATHS, **document["paths"]}
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(RequestValidationError)
    async def invalid_parameter(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return error(422, "invalid_parameter", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = HTTP_ERRORS.get(exc.status_code, "http_error")
        allow = (exc.headers or {}).get("Allow")
        detail = f"use {allow}" if exc.status_code == 405 and allow else str(exc.detail).lower()
        return JSONResponse({"error": kind, "message": f"{request.url.path}: {detail}"},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, __: Exception) -> Response:
        return Response(INTERNAL_ERROR, status_code=500, media_type="application/json")

    @app.exception_handler(Unavailable)
    async def unavailable(_: Request, exc: Unavailable) -> Response:
        status, body = failure(exc)
        return Response(body, status_code=status, media_type="application/json")

    def found_or_404(what: str, key: str, value: dict[str, Any] | None) -> JSONResponse:
        if value is None:
            return error(404, "not_found", f"{what}: no {what} {key!r}")
        return JSONResponse(value)

    @app.get("/v1/providers/{owner}", **documented(read_models.Provider, 404))
    async def provider(owner: Annotated[str, Path(max_length=256)]) -> JSONResponse:
        """One provider's inventory row, nodes with free capacity, and audits."""
        return found_or_404("provider", owner, await run_in_threadpool(reads.provider, owner))

    @app.get("/v1/providers/{owner}/runs/{run_id}", **documented(read_models.Run, 404))
    async def provider_run(owner: Annotated[str, Path(max_length=256)],
                           run_id: Annotated[str, Path(max_length=256)]) -> JSONResponse:
        """One run of one provider with its embedded hardware, software and metrics."""
        return found_or_404("run", run_id,
                            await run_in_threadpool(reads.run, owner, run_id))

    @app.get("/v1/runs/{run_id}", deprecated=True, **documented(read_models.Run, 404, 409))
    async def run(run_id: Annotated[str, Path(max_length=256)]) -> JSONResponse:
        """The run of this id when only one provider has one (409 `ambiguous_run` when
        several do); use /v1/providers/{owner}/runs/{run_id}."""
        try:
            found = await run_in_threadpool(reads.run, None, run_id)
        except AmbiguousRun as exc:
            return error(409, "ambiguous_run", str(exc))
        return found_or_404("run", run_id, found)

    @app.get("/v1/hardware/{system_hardware_id}", **documented(read_models.Hardware, 404))
    async def hardware(system_hardware_id: Annotated[str, Path(max_length=64)]
                       ) -> JSONResponse:
        """One system_hardware row with its embedded gpus[]."""
        return found_or_404("hardware", system_hardware_id,
                            await run_in_threadpool(reads.hardware, system_hardware_id))

    @app.get("/v1/gpus", **documented(read_models.Gpus, 422))
    async def gpus(
        vendor: Annotated[str | None, Query(max_length=64, pattern=TOKEN_PATTERN,
                                            description="GPU vendor token, e.g. nvidia")] = None,
        model: Annotated[str | None, Query(max_length=64, pattern=TOKEN_PATTERN,
                                           description="GPU model token, e.g. h100")] = None,
        region: Annotated[str | None, Query(max_length=256, pattern=TEXT_PATTERN,
                                            description="the providers' `region` attribute")
                          ] = None,
        auditor: Annotated[str | None, Query(max_length=256, pattern=TEXT_PATTERN,
                                             description="an auditor who signed the provider")
                           ] = None,
    ) -> JSONResponse:
        """Installed and free GPUs of the online providers (seen within the online TTL) per
        vendor, model, RAM and interface, the providers offering them, and the totals, with
        `asOf`. Vendor and model match case-insensitively."""
        wanted = FleetFilter(None if vendor is None else vendor.lower(),
                             None if model is None else model.lower(), region, auditor)
        return JSONResponse(await run_in_threadpool(reads.gpus, wanted))

    @app.get("/v1/providers", **documented(read_models.Providers, 422))
    async def providers(limit: Annotated[int, Query(ge=1, le=MAX_PROVIDER_LIST)] = 100
                        ) -> JSONResponse:
        """The first `limit` providers by owner, online or not: region, auditors, GPU models,
        free GPUs, last seen and staleness (`fresh`, `ageing`: over half the online TTL,
        `offline`), with the service clock `now`, `onlineSince` and `asOf`."""
        return JSONResponse(await run_in_threadpool(reads.providers, limit))

    @app.get("/", include_in_schema=False)
    async def console() -> FileResponse:
        """The fleet console page."""
        return FileResponse(CONSOLE / "index.html")

    app.mount("/console", StaticFiles(directory=CONSOLE), name="console")

    @app.get("/healthz", response_model=read_models.Health)
    async def healthz() -> JSONResponse:
        """The process is up."""
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", **documented(read_models.Ready))
    async def readyz() -> JSONResponse:
        """The database answers and the active schema has the read model."""
        return JSONResponse(await run_in_threadpool(reads.ready))

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus metrics of this process (of every worker with `serve --workers`)."""
        return Response(generate_latest(scrape_registry(metrics.registry)),
                        media_type=CONTENT_TYPE_LATEST)

    return metrics.middleware(screening_routes(service, app, metrics), app.routes,
                              SCREENING)


class JsonErrorsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the parser's 400 (a request it cannot parse) answered
    as `{"error": "bad_request", "message"}` instead of plain text."""

    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps({"error": "bad_request", "message": f"http: {msg}"})
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        head.extend(name + b": " + value + b"\r\n"
                    for name, value in self.server_state.default_headers)
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\n"
                    b"connection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()
