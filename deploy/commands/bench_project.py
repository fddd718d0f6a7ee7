"""`hwledger bench project`: projector throughput vs a plain-upsert ceiling and a naive
one-transaction-per-event projector (see deploy/project_bench.py)."""

from __future__ import annotations

import argparse
import json

from hwledger.deploy.commands import Subparsers, add_command, positive
from hwledger.deploy.config import Settings
from hwledger.deploy.project_bench import BenchConfig, run_benchmark
from hwledger.projectors.service import tune_gc


def register(subparsers: Subparsers) -> None:
    bench = add_command(subparsers, "project", _bench, "projector events/s, side by side with "
                        "a plain-upsert ceiling and a naive projector")
    bench.add_argument("--snapshots", type=positive, default=100_000,
                       help="HardwareSnapshotted events (runs come on top; default 100000)")
    bench.add_argument("--batch-size", type=positive, default=2000)
    bench.add_argument("--processes", type=positive, default=2,
                       help="projector processes of the main figure (default 2, one per core; "
                            "one process is measured too)")
    bench.add_argument("--naive-seconds", type=float, default=20.0,
                       help="how long the naive projector is measured (default 20)")


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    tune_gc()
    figures = run_benchmark(BenchConfig(
        database_url=settings.require_database_url(), kafka=settings.kafka_config(),
        snapshots=args.snapshots, batch_size=args.batch_size, naive_seconds=args.naive_seconds,
        processes=args.processes))
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(figures, sort_keys=True))
    return 0
