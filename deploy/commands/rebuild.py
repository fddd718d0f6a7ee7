"""`hwledger rebuild` (replay the log into a new schema and switch) and `hwledger verify`."""

from __future__ import annotations

import argparse
import logging

from confluent_kafka import Consumer, KafkaException, TopicPartition
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from hwledger.deploy.commands import Subparsers, add_command, configure_logging
from hwledger.deploy.config import Settings
from hwledger.deploy.kafka_admin import check_broker
from hwledger.projectors.rebuild import RebuildProgress, drop_old, rebuild
from hwledger.projectors.replicas import tune_gc
from hwledger.projectors.verify import TableDiff, compare
from hwledger.schemas.db import check_schema_name, connect
from hwledger.schemas.errors import UserError
from hwledger.schemas.migrations import active_schema, drop_schema, migrated_schema

console = Console()


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "rebuild", _rebuild,
                         "replay the whole log into a fresh schema, then switch readers to it")
    parser.add_argument("--keep-projecting", action="store_true",
                        help="after the switch, go on as the live projector until stopped")
    parser.add_argument("--no-switch", action="store_true",
                        help="replay only; leave the active schema as it is")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes sharing the partitions (default 1)")
    parser.add_argument("--drop-old", action="store_true",
                        help="only drop the read-model schemas that are not active, then exit")
    verify = add_command(subparsers, "verify", _verify,
                         "compare the active schema with another one (or a fresh replay)")
    verify.add_argument("--against", help="schema to compare with (default: a fresh replay "
                                           "into a scratch schema, dropped afterwards)")


def log_size(kafka: dict[str, object], topic: str) -> int:
    """Messages in the topic (sum of high watermarks; Tansu may under-report the last batch)."""
    metadata = check_broker(kafka)
    if topic not in metadata.topics:
        raise UserError(f"topic {topic!r} does not exist on {kafka['bootstrap.servers']}")
    consumer = Consumer({**kafka, "group.id": "hwledger-log-size"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in metadata.topics[topic].partitions)
    except KafkaException as exc:
        raise UserError(f"cannot read the size of topic {topic!r}: {exc}") from exc
    finally:
        consumer.close()


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(logging.WARNING, settings.log_format)
    tune_gc()
    url = settings.require_database_url()
    if args.drop_old:
        dropped = drop_old(url)
        console.print(f"dropped {', '.join(dropped)}" if dropped else "nothing to drop")
        return 0
    migrated_schema(url)
    kafka = settings.kafka_config()
    total = log_size(kafka, settings.topic)
    with Progress(TextColumn("rebuild {task.fields[schema]}"), BarColumn(),
                  MofNCompleteColumn(), TextColumn("{task.fields[rate]} events/s"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("rebuild", total=max(total, 1), schema="", rate="-")

        def show(progress: RebuildProgress) -> None:
            speed = bar.tasks[task].speed
            bar.update(task, completed=progress.events, schema=progress.schema,
                       rate=f"{speed:,.0f}" if speed else "-",
                       total=max(total, progress.events, 1))

        result = rebuild(url, settings.topic, kafka, switch=not args.no_switch,
                         keep_projecting=args.keep_projecting, workers=args.workers,
                         listener=show, auditor_keys=settings.auditor_keys())
    console.print(f"replayed {result.events} events into {result.schema}")
    if args.no_switch:
        console.print(f"active schema unchanged: {result.previous}")
    elif result.switched:
        console.print(f"switched readers from {result.previous} to {result.schema}; restart "
                      "the live projectors so they follow it, then `hwledger rebuild "
                      "--drop-old` removes the old schema")
    else:
        console.print(f"[red]not switched: {result.schema} never caught up with "
                      f"{result.previous}[/]")
        return 1
    return 0


def _diff_table(a: str, b: str, diffs: list[TableDiff]) -> Table:
    table = Table(title=f"{a} vs {b}")
    for column in ("table", f"rows {a}", f"rows {b}", "equal", "first differing rows"):
        table.add_column(column)
    for d in diffs:
        rows = [f"- {r}" for r in d.only_in_a] + [f"+ {r}" for r in d.only_in_b]
        table.add_row(d.table, str(d.rows_a), str(d.rows_b), "yes" if d.equal else "NO",
                      "\n".join(rows))
    return table


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.require_database_url()
    with connect(url, None) as conn:
        live = active_schema(conn)
    if args.against:
        diffs = compare(url, live, check_schema_name(args.against))
        other = args.against
    else:
        replay = rebuild(url, settings.topic, settings.kafka_config(), switch=False,
                         auditor_keys=settings.auditor_keys())
        other = replay.schema
        try:
            diffs = compare(url, live, other)
        finally:
            drop_schema(url, other)
    console.print(_diff_table(live, other, diffs))
    different = [d.table for d in diffs if not d.equal]
    if different:
        console.print(f"[red]{len(different)} table(s) differ: {', '.join(different)}[/]")
        return 1
    console.print(f"all {len(diffs)} tables equal")
    return 0
