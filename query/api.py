"""The HTTP API of DESIGN section 6: the FastAPI app, with the screening routes in front.

`create_app` puts `screening_http.screening_routes` (POST /v1/bid-screening, /v1/prefilter,
plain ASGI: docs/adr/0035-plain-asgi-screening-routes.md) in front of the FastAPI app, which
serves the detail reads, health, metrics, /docs and the OpenAPI document (the screening
operations from `screening_openapi`). Every error answer has the one `{"error", "message"}`
shape: query-parameter errors, unknown routes (404), wrong methods (405), database trouble
(503), a bug (500 `internal_error`) and the HTTP parser's 400s (`JsonErrorsProtocol`, the
uvicorn protocol `hwledger serve` runs).

/metrics serves `http_metrics.HttpMetrics`; the read routes' answers come from `reads.Reads`,
described in the OpenAPI document by `read_models` (response schemas with examples).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path as FilePath
from typing import Annotated, Any

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
from hwledger.query.asgi import ASGIApp
from hwledger.query.fleet import FleetFilter
from hwledger.query.http_metrics import HttpMetrics
from hwledger.query.reads import AmbiguousRun, Reads
from hwledger.query.screening_http import (
    INTERNAL_ERROR,
    SCREENING,
    SCREENING_PATHS,
    failure,
    screening_routes,
)
from hwledger.query.screening_openapi import ERROR_RESPONSE as _ERROR
from hwledger.query.service import QueryService, Unavailable
from hwledger.schemas.prometheus import scrape_registry, worker_exited

MAX_PROVIDER_LIST = 1000
CONSOLE = FilePath(__file__).with_name("console")
"""The fleet console's static page (index.html, console.js, console.css), served at `/`."""
TOKEN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]+$"

HTTP_ERRORS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
"""The `error` of the framework's answers by status."""


def error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": kind, "message": message}, status_code=status)


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
