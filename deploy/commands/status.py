"""`hwledger status`: the live stack on one screen (broker, lag, problems, schema, query)."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table
from rich.text import Text

from hwledger.deploy.commands import Subparsers, add_command
from hwledger.deploy.config import Settings
from hwledger.deploy.status import exit_code, rows
from hwledger.deploy.status_gather import gather
from hwledger.projectors.offsets import PROJECTION
from hwledger.schemas.secrets import redact

STYLES = {"ok": "green", "warn": "yellow", "down": "red"}


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers, "status", _status,
        "one screen: broker and partitions, projector lag, dead letters and parked events, "
        "last event time, active schema, query service health (exit 3 when a part is down)")
    parser.add_argument("--projection", default=PROJECTION,
                        help=f"projection whose offsets to compare (default {PROJECTION!r})")


def _status(args: argparse.Namespace, settings: Settings) -> int:
    report = gather(settings, args.projection)
    table = Table(title="hwledger status", title_justify="left")
    table.add_column("part", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for row in rows(report):
        table.add_row(Text(row.part), Text(row.state, style=STYLES[row.state]),
                      Text(redact(row.detail)))
    Console().print(table)
    return exit_code(report)
