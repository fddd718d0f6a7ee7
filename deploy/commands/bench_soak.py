"""`hwledger bench soak --seconds N`: produce-to-queryable latency and memory under load."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hwledger.deploy.commands import Subparsers, add_command
from hwledger.deploy.config import Settings
from hwledger.deploy.soak import figures, run_soak

console = Console()


def register(bench_group: Subparsers) -> None:
    parser = add_command(bench_group, "soak", _soak,
                         "producers + projector + queries together: latency p50/p99, memory")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=1000, help="events per second")


def _soak(args: argparse.Namespace, settings: Settings) -> int:
    with Progress(TextColumn("soak"), BarColumn(), TextColumn("{task.completed:.0f}s"),
                  TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("soak", total=args.seconds)
        result = run_soak(settings, args.seconds, args.rate,
                          lambda elapsed: bar.update(task, completed=elapsed))
    found = figures(result)
    table = Table(title=f"soak at {args.rate} events/s (goal: p99 <= 1 s, memory flat)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in found.items():
        table.add_row(key, str(value))
    console.print(table)
    print(json.dumps(found))
    return 0
