"""`hwledger project` (the projector service), `hwledger dlq list|parked|retry` and
`hwledger offsets reset` (the recovery from a lost log)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg

from hwledger.deploy.commands import Subparsers, add_command, add_group, configure_logging, positive
from hwledger.deploy.config import Settings
from hwledger.deploy.kafka_admin import check_broker
from hwledger.deploy.status import Unreachable
from hwledger.deploy.status_gather import gather_broker
from hwledger.projectors.config import ProjectorConfig
from hwledger.projectors.dead_letters import dead_letter_rows, parked_rows, to_json
from hwledger.projectors.logcheck import log_gap
from hwledger.projectors.metrics import Metrics
from hwledger.projectors.replicas import (
    install_signal_handlers,
    start_replicas,
    stop_replicas,
    tune_gc,
)
from hwledger.projectors.service import Projector
from hwledger.projectors.writer import Writer
from hwledger.schemas.db import connect
from hwledger.schemas.errors import UserError
from hwledger.schemas.migrations import migrated_schema


def register(subparsers: Subparsers) -> None:
    project = add_command(subparsers, "project", _project,
                          "project the event log into Postgres (consumer-group service)")
    project.add_argument("--group", default="hwledger-projector", help="consumer group id")
    project.add_argument("--batch-size", type=positive, default=2000,
                         help="most messages per transaction (default 2000)")
    project.add_argument("--batch-seconds", type=float, default=0.5,
                         help="longest wait to fill a batch (default 0.5)")
    project.add_argument("--exit-when-idle", type=float, metavar="SECONDS",
                         help="exit 0 after this long without messages once it has partitions")
    project.add_argument("--until-caught-up", action="store_true",
                         help="exit 0 once every assigned partition is projected to its end")
    project.add_argument("--processes", type=positive, default=1,
                         help="projector processes in the consumer group, one per core "
                              "(default 1; metrics of process i on HWLEDGER_METRICS_PORT + i)")
    dlq = add_group(subparsers, "dlq", "dead letters and parked events")
    listing = add_command(dlq, "list", _list, "newest dead letters as JSON lines")
    listing.add_argument("--limit", type=positive, default=50)
    parked = add_command(dlq, "parked", _parked, "parked events (waiting for a reference)")
    parked.add_argument("--limit", type=positive, default=50)
    retry = add_command(dlq, "retry", _retry, "re-project one dead letter")
    retry.add_argument("id", type=positive, help="dead_letter_id from `hwledger dlq list`")
    offsets = add_group(subparsers, "offsets", "the projection's stored offsets")
    reset = add_command(offsets, "reset", _reset,
                        "move a partition whose log was lost or truncated to its log start")
    reset.add_argument("--partition", type=int, action="append", required=True,
                       help="partition to reset (repeat for several)")



def _schema(settings: Settings, url: str) -> str:
    """The schema to project into (HWLEDGER_DB_SCHEMA, else the active one), migrated."""
    return migrated_schema(url, settings.db_schema)


def _project(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(log_format=settings.log_format)
    url = settings.require_database_url()
    config = ProjectorConfig(
        database_url=url, schema=_schema(settings, url), topic=settings.topic,
        kafka=settings.kafka_config(), group_id=args.group, batch_size=args.batch_size,
        batch_seconds=args.batch_seconds, park_ttl=timedelta(seconds=settings.park_ttl_seconds),
        idle_exit_seconds=args.exit_when_idle, exit_when_caught_up=args.until_caught_up,
        auditor_keys=settings.auditor_keys(), stall_seconds=settings.projector_stall_seconds)
    check_broker(config.kafka)
    tune_gc()
    metrics = Metrics()
    projector = Projector(config, metrics)
    metrics.serve(settings.metrics_port, settings.metrics_host, projector.health)
    install_signal_handlers(projector)
    replicas = start_replicas([config] * (args.processes - 1), settings.metrics_port,
                              settings.metrics_host)
    try:
        code = projector.run()
    except BaseException:
        stop_replicas(replicas)
        raise
    # Stopped by a signal: stop the replicas too; caught up or idle: they end on their own.
    return code or stop_replicas(replicas, terminate=projector.stopping)


def _writer(settings: Settings) -> Writer:
    url = settings.require_database_url()
    conn = connect(url, _schema(settings, url))
    return Writer(conn, timedelta(seconds=settings.park_ttl_seconds),
                  auditor_keys=settings.auditor_keys())


Rows = Callable[[psycopg.Connection[Any], int], list[dict[str, Any]]]


def _print_rows(settings: Settings, read: Rows, limit: int) -> int:
    """The rows `read` returns, one JSON object a line (nothing for none)."""
    writer = _writer(settings)
    with writer.conn:
        rows = read(writer.conn, limit)
    if rows:
        print(to_json(rows))
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    return _print_rows(settings, dead_letter_rows, args.limit)


def _parked(args: argparse.Namespace, settings: Settings) -> int:
    return _print_rows(settings, parked_rows, args.limit)


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    writer = _writer(settings)
    with writer.conn:
        try:
            plan = writer.retry_dead_letter(args.id)
        except LookupError as exc:
            raise UserError(str(exc.args[0])) from None
        except ValueError as exc:
            raise UserError(f"dead letter {args.id} is still bad: {exc}") from None
    outcome = "a duplicate of an applied event" if plan.duplicates else "applied"
    print(f"dead letter {args.id}: {outcome}")
    return 0


def _reset(args: argparse.Namespace, settings: Settings) -> int:
    """Reset each named partition that the projector stopped (or whose log starts after its
    stored offset) to its log start. Safe: the events from there on are applied or recognised
    as already applied by their event ids."""
    broker = gather_broker(settings)
    if isinstance(broker, Unreachable):
        raise UserError(f"cannot read the topic's watermarks: {broker.reason}")
    writer = _writer(settings)
    with writer.conn:
        stored = writer.offsets.stored(settings.topic, args.partition)
        halted = writer.offsets.halted(settings.topic, args.partition)
        for partition in args.partition:
            if partition not in broker.watermarks:
                raise UserError(f"topic {settings.topic!r} has no partition {partition}")
            low = broker.watermarks[partition][0]
            if partition not in halted and log_gap(partition, low, None,
                                                   stored[partition]) is None:
                raise UserError(f"partition {partition} is not stopped and its log holds the "
                                f"stored offset {stored[partition]}; nothing to reset")
        for partition in args.partition:
            low = broker.watermarks[partition][0]
            writer.offsets.reset(settings.topic, partition, low)
            print(f"partition {partition}: next offset {stored[partition]} -> {low}")
    return 0
