"""`hwledger serve` (the HTTP query service) and `hwledger screen REQUEST.json`."""

from __future__ import annotations

import argparse
import asyncio
import json
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hwledger.deploy.commands import Subparsers, add_command, configure_logging
from hwledger.deploy.config import Settings
from hwledger.query.aggregator import parse_group_spec
from hwledger.query.answers import Answer
from hwledger.query.group_request import GroupRequest
from hwledger.query.limits import BudgetExceeded, Limits, TooCostly
from hwledger.query.request_fields import InvalidRequest
from hwledger.query.service import DEFAULT_LIMIT, QueryService, Unavailable, make_engine
from hwledger.schemas.errors import UserError
from hwledger.schemas.json_file import read_json
from hwledger.schemas.migrations import migrated_schema
from hwledger.schemas.prometheus import multiprocess_directory


def service_for(settings: Settings) -> QueryService:
    """A QueryService on the query database URL; HWLEDGER_DB_SCHEMA pins a schema."""
    return QueryService(make_engine(settings.require_query_database_url()),
                        online_ttl_seconds=settings.online_ttl_seconds,
                        schema=settings.db_schema, limits=Limits(
                            max_placement_steps=settings.query_max_placement_steps,
                            time_budget_seconds=settings.query_time_budget_ms / 1000,
                            max_answer_bytes=settings.query_max_answer_bytes,
                            workers=settings.query_workers))


def _app(settings: Settings) -> Any:
    from hwledger.query.api import create_app

    return create_app(service_for(settings))


def app_from_env() -> Any:
    """The ASGI app from HWLEDGER_* settings (the factory each `--workers` process calls),
    logging through `redact`."""
    settings = Settings.from_env()
    configure_logging(log_format=settings.log_format)
    return _app(settings)


def serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from hwledger.query.api import JsonErrorsProtocol

    migrated_schema(settings.checked_query_database_url(), settings.db_schema)
    host, port = args.host or settings.http_host, args.port or settings.http_port
    configure_logging(args.log_level.upper(), settings.log_format)
    if args.workers > 1:
        with multiprocess_directory():  # one scrape of any worker counts them all
            uvicorn.run(f"{__name__}:app_from_env", factory=True, workers=args.workers,
                        host=host, port=port, log_level=args.log_level,
                        access_log=settings.access_log, http=JsonErrorsProtocol,
                        log_config=None)
    else:
        uvicorn.run(_app(settings), host=host, port=port, log_level=args.log_level,
                    access_log=settings.access_log, http=JsonErrorsProtocol, log_config=None)
    return 0


def read_group_spec(path: Traversable) -> tuple[Any, GroupRequest]:
    """A GroupSpec JSON file as its document and the parsed request; a file that cannot be
    read, is not JSON or is not a valid GroupSpec is a one-line UserError naming it."""
    document = read_json(path, lambda cause: UserError(f"{path}: {cause}"))
    try:
        return document, parse_group_spec(document)
    except InvalidRequest as exc:
        raise UserError(f"{path}: {exc}") from exc


def _table(answer: Answer) -> Table:
    providers = answer.providers()
    table = Table(title=f"{len(providers)} candidate(s), schema {answer.schema}, "
                        f"position {answer.as_of.position}")
    for column in ("owner", "host uri", "gpu models", "audited by", "last seen", "placement"):
        table.add_column(column)
    for p in providers:
        placement = ", ".join(f"{u['unit']}x{u['count']}@{u['node']}"
                              + (f"{u['gpuSlots']}" if u["gpuSlots"] else "")
                              for u in p.get("placement", ()))
        table.add_row(p["owner"], p["hostUri"] or "", " ".join(p["gpuModels"]),
                      " ".join(p["auditedBy"]), p["lastSeenAt"] or "", placement)
    return table


def screen(args: argparse.Namespace, settings: Settings) -> int:
    from hwledger.query.answers import answer_json

    _, request = read_group_spec(Path(args.request))
    service = service_for(settings)

    async def ask() -> Answer:
        try:
            return await service.bid_screening(request, exact=args.exact, limit=args.limit)
        finally:
            await service.close()

    try:
        answer = asyncio.run(ask())
    except Unavailable as exc:
        raise UserError(f"database: {exc}") from exc
    except (TooCostly, BudgetExceeded) as exc:
        raise UserError(str(exc)) from exc
    if args.json:
        print(json.dumps(json.loads(answer_json(answer, explain=True)), indent=2))
    else:
        console = Console()
        console.print(_table(answer))
        for provider_id, reason in answer.rejected:
            console.print(f"[dim]not placeable: {provider_id}: {reason}[/dim]")
    return 0


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "serve", serve,
                         "run the HTTP query service (bid screening, OpenAPI at /docs)")
    parser.add_argument("--host", help="bind address (default HWLEDGER_HTTP_HOST)")
    parser.add_argument("--port", type=int, help="port (default HWLEDGER_HTTP_PORT)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes (each with its own connection pool; /metrics "
                             "of any of them counts all)")
    parser.add_argument("--log-level", default="info",
                        choices=("critical", "error", "warning", "info", "debug"))
    parser = add_command(subparsers, "screen", screen,
                         "print the providers that could host a GroupSpec request")
    parser.add_argument("request", metavar="REQUEST.json", help="Akash-style GroupSpec JSON")
    parser.add_argument("--exact", action="store_true",
                        help="run the bin-packer and keep only placeable providers")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                        help=f"most providers (default {DEFAULT_LIMIT})")
