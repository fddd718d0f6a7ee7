"""`hwledger bench rebuild`: rebuild rate vs the live projector on the same log."""

from __future__ import annotations

import argparse
import json

from hwledger.deploy.commands import Subparsers, add_command, positive
from hwledger.deploy.config import Settings
from hwledger.deploy.rebuild_bench import run_rebuild_benchmark
from hwledger.projectors.service import tune_gc


def register(subparsers: Subparsers) -> None:
    bench = add_command(subparsers, "rebuild", _bench,
                        "events/s of a full rebuild, side by side with the live projector")
    bench.add_argument("--events", type=positive, default=1_000_000)
    bench.add_argument("--live-seconds", type=float, default=60.0,
                       help="how long the live projector is measured (default 60)")
    bench.add_argument("--batch-size", type=positive, default=20_000)
    bench.add_argument("--workers", type=positive, default=2,
                       help="rebuild processes sharing the partitions (default 2)")


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    tune_gc()
    figures = run_rebuild_benchmark(settings.require_database_url(), settings.kafka_config(),
                                    args.events, args.live_seconds, args.batch_size,
                                    args.workers)
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(figures))
    return 0
