"""`hwledger bench gpus`: /v1/gpus p50/p99 over a projected fleet vs a naive Python count."""

from __future__ import annotations

import argparse
import json

from hwledger.deploy.commands import Subparsers, add_command, positive
from hwledger.deploy.config import Settings
from hwledger.query.fleet_bench import run_gpu_benchmark


def register(subparsers: Subparsers) -> None:
    bench = add_command(subparsers, "gpus", _bench,
                        "/v1/gpus p50/p99 over a projected synthetic fleet vs a naive count")
    bench.add_argument("--providers", type=positive, default=100_000)
    bench.add_argument("--requests", type=positive, default=20,
                       help="answers timed per filter (default 20)")
    bench.add_argument("--naive-sample", type=positive, default=2)
    bench.add_argument("--seed", type=int, default=7)


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    figures = run_gpu_benchmark(settings.require_database_url(), providers=args.providers,
                                requests=args.requests, naive_sample=args.naive_sample,
                                seed=args.seed)
    print(json.dumps(figures))
    return 0
