"""`hwledger bench heartbeat-day`: a day of heartbeats for 100,000 providers (a sample, scaled),
before (full snapshots, the pre-0007 schema) and after (heartbeats, current schema), side by side
(see deploy/heartbeat_day.py)."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from hwledger.deploy.commands import Subparsers, add_command, positive
from hwledger.deploy.config import Settings
from hwledger.deploy.heartbeat_day import SIDES, DayConfig, figures, run_day

console = Console(stderr=True)


def register(subparsers: Subparsers) -> None:
    bench = add_command(subparsers, "heartbeat-day", _bench,
                        "a day of heartbeats through the writer: WAL, bloat, HOT updates and "
                        "write rate, full snapshots (before) vs heartbeats (after)")
    bench.add_argument("--providers", type=positive, default=100_000,
                       help="providers the day figures are scaled to (default 100000)")
    bench.add_argument("--sample", type=positive, default=250,
                       help="providers simulated (default 250)")
    bench.add_argument("--nodes", type=positive, default=4, help="nodes per provider")
    bench.add_argument("--periods", type=_periods, default=288,
                       help="300 s periods (default 288, a day)")
    bench.add_argument("--snapshot-every", type=positive, default=12,
                       help="the agent's full snapshot every N-th period (default 12)")
    bench.add_argument("--batch-size", type=positive, default=2000)


def _periods(text: str) -> int:
    periods = positive(text)
    if periods < 2:
        raise argparse.ArgumentTypeError("at least 2 periods: the first is the untimed start")
    return periods


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    config = DayConfig(args.providers, args.sample, args.nodes, args.periods,
                       args.snapshot_every, args.batch_size)
    sides = run_day(settings.require_database_url(), config,
                    lambda period: console.print(f"period {period + 1}/{config.periods}",
                                                 end="\r"))
    found = figures(sides, config)
    table = Table(title=f"a day of heartbeats, {config.sample} providers x {config.nodes} "
                        f"nodes measured, scaled to {config.providers}")
    table.add_column("figure")
    for side in SIDES:
        table.add_column(side, justify="right")
    for key in [k.removeprefix("before_") for k in found if k.startswith("before_")]:
        table.add_row(key, *(str(found[f"{side}_{key}"]) for side in SIDES))
    Console().print(table)
    print(json.dumps(found))
    return 0
