"""`hwledger bench <name>`: benchmarks that print their figures and a side-by-side baseline.

Each benchmark ends its output with one JSON line of figures. Results with the command that
made them go to docs/performance.md. The benchmark modules are imported when their command
runs, so the rest of the CLI does not load them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hwledger.deploy.commands import Subparsers, add_command, add_group, positive, positive_number
from hwledger.deploy.config import Settings
from hwledger.deploy.kafka_admin import ensure_topic
from hwledger.deploy.local_processes import free_port, stop_pid
from hwledger.deploy.tansu_broker import EmbeddedBroker
from hwledger.projectors.replicas import tune_gc

console = Console(stderr=True)


def register(subparsers: Subparsers) -> None:
    bench = add_group(subparsers, "bench", "benchmarks (figures + side-by-side baseline)")
    for add in (_query, _produce, _project, _rebuild, _soak, _gpus, _heartbeat_day, _telemetry):
        add(bench)


def _print_figures(figures: Mapping[str, Any]) -> None:
    """One `key  value` line per figure, then the JSON line."""
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(figures, sort_keys=True))


def _query(bench: Subparsers) -> None:
    parser = add_command(bench, "query", bench_query,
                         "prefilter p50/p99 and HTTP requests/s vs the peer-shaped SQL and a "
                         "naive Python filter; exact=true and the bin-packer vs the old one")
    parser.add_argument("--providers", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--naive-sample", type=int, default=10,
                        help="requests the (slow) naive baseline runs")
    parser.add_argument("--http-requests", type=int, default=3000,
                        help="requests per HTTP round")
    parser.add_argument("--http-rounds", type=int, default=5,
                        help="HTTP rounds; requests/s is their median")
    parser.add_argument("--clients", type=int, default=4, help="keep-alive HTTP clients")
    parser.add_argument("--port", type=int, help="port for the service (default: free)")
    parser.add_argument("--workers", type=int, default=1,
                        help="`hwledger serve --workers` processes (1: Postgres and the "
                             "load client share the cores; see docs/performance.md)")
    parser.add_argument("--exact-requests", type=int, default=200,
                        help="exact=true requests timed (plus a quarter as many "
                             "false-positive ones)")
    parser.add_argument("--packing-sample", type=int, default=50,
                        help="requests whose candidates time the bin-packer, new vs old")
    parser.add_argument("--seed", type=int, default=7)


def bench_query(args: argparse.Namespace, settings: Settings) -> int:
    from hwledger.deploy.bench.query import run_benchmark

    figures = run_benchmark(
        settings.require_database_url(), providers=args.providers, requests=args.requests,
        naive_sample=args.naive_sample, http_requests=args.http_requests, clients=args.clients,
        port=args.port or free_port(), workers=args.workers, seed=args.seed,
        http_rounds=args.http_rounds, exact_requests=args.exact_requests,
        packing_sample=args.packing_sample)
    print(json.dumps(figures))
    return 0


def _produce(bench: Subparsers) -> None:
    parser = add_command(bench, "produce", bench_produce,
                         "8-GPU snapshot events/s through the spool vs a raw Kafka "
                         "producer, and probe time")
    parser.add_argument("--events", type=positive, default=50_000)
    parser.add_argument("--batch", type=positive, default=1000,
                        help="events per publish_encoded call (one fsync per batch)")
    parser.add_argument("--rounds", type=positive, default=3)
    parser.add_argument("--single", type=positive, default=2000,
                        help="events for the one-event-per-call figure")


@contextlib.contextmanager
def _bench_broker(settings: Settings) -> Iterator[str]:
    """The configured broker, else an embedded one for the benchmark's duration."""
    if settings.kafka_bootstrap:
        yield settings.kafka_bootstrap
        return
    with tempfile.TemporaryDirectory(prefix="hwledger-bench-") as workdir:
        port = free_port()
        pid = EmbeddedBroker(Path(workdir) / "broker.log").start(port)
        try:
            yield f"127.0.0.1:{port}"
        finally:
            stop_pid(pid)


def bench_produce(args: argparse.Namespace, settings: Settings) -> int:
    from hwledger.deploy.bench import produce

    with _bench_broker(settings) as bootstrap:
        config = {**settings.kafka_extra, "bootstrap.servers": bootstrap}
        console.print(f"broker {bootstrap}")

        def new_topic() -> str:
            topic = f"hwledger.bench.{uuid.uuid4().hex[:8]}"
            ensure_topic(config, topic, settings.partitions)
            return topic

        figures = produce.run(config, new_topic, events=args.events, batch=args.batch,
                              rounds=args.rounds, single=min(args.single, args.events),
                              say=console.print)
    print(json.dumps(figures))
    return 0


def _project(bench: Subparsers) -> None:
    parser = add_command(bench, "project", bench_project, "projector events/s, side by side "
                         "with a plain-upsert ceiling and a naive projector")
    parser.add_argument("--snapshots", type=positive, default=100_000,
                        help="HardwareSnapshotted events (runs come on top; default 100000)")
    parser.add_argument("--batch-size", type=positive, default=2000)
    parser.add_argument("--processes", type=positive, default=2,
                        help="projector processes of the main figure (default 2, one per core; "
                             "one process is measured too)")
    parser.add_argument("--naive-seconds", type=float, default=20.0,
                        help="how long the naive projector is measured (default 20)")


def bench_project(args: argparse.Namespace, settings: Settings) -> int:
    from hwledger.deploy.bench.project import BenchConfig, run_benchmark

    tune_gc()
    _print_figures(run_benchmark(BenchConfig(
        database_url=settings.require_database_url(), kafka=settings.kafka_config(),
        snapshots=args.snapshots, batch_size=args.batch_size, naive_seconds=args.naive_seconds,
        processes=args.processes)))
    return 0


def _rebuild(bench: Subparsers) -> None:
    parser = add_command(bench, "rebuild", bench_rebuild,
                         "events/s of a full rebuild, side by side with the live projector")
    parser.add_argument("--events", type=positive, default=1_000_000)
    parser.add_argument("--live-seconds", type=float, default=60.0,
                        help="how long the live projector is measured (default 60)")
    parser.add_argument("--batch-size", type=positive, default=20_000)
    parser.add_argument("--workers", type=positive, default=2,
                        help="rebuild processes sharing the partitions (default 2)")


def bench_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from hwledger.deploy.bench.rebuild import run_rebuild_benchmark

    tune_gc()
    _print_figures(run_rebuild_benchmark(settings.require_database_url(),
                                         settings.kafka_config(), args.events, args.live_seconds,
                                         args.batch_size, args.workers))
    return 0


def _soak(bench: Subparsers) -> None:
    parser = add_command(bench, "soak", bench_soak,
                         "producers + projector + queries together: latency p50/p99, memory")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=1000, help="events per second")


def bench_soak(args: argparse.Namespace, settings: Settings) -> int:
    from hwledger.deploy.bench.soak import figures, run_soak

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
    Console().print(table)
    print(json.dumps(found))
    return 0


def _gpus(bench: Subparsers) -> None:
    parser = add_command(bench, "gpus", bench_gpus,
                         "/v1/gpus p50/p99 over a projected synthetic fleet vs a naive count")
    parser.add_argument("--providers", type=positive, default=100_000)
    parser.add_argument("--requests", type=positive, default=20,
                        help="answers timed per filter (default 20)")
    parser.add_argument("--naive-sample", type=positive, default=2)
    parser.add_argument("--seed", type=int, default=7)


def bench_gpus(args: argparse.Namespace, settings: Settings) -> int:
    from hwledger.deploy.bench.gpus import run_gpu_benchmark

    figures = run_gpu_benchmark(settings.require_database_url(), providers=args.providers,
                                requests=args.requests, naive_sample=args.naive_sample,
                                seed=args.seed)
    print(json.dumps(figures))
    return 0


def _heartbeat_day(bench: Subparsers) -> None:
    parser = add_command(bench, "heartbeat-day", bench_heartbeat_day,
                         "a day of heartbeats through the writer: WAL, bloat, HOT updates and "
                         "write rate, full snapshots (before) vs heartbeats (after)")
    parser.add_argument("--providers", type=positive, default=100_000,
                        help="providers the day figures are scaled to (default 100000)")
    parser.add_argument("--sample", type=positive, default=250,
                        help="providers simulated (default 250)")
    parser.add_argument("--nodes", type=positive, default=4, help="nodes per provider")
    parser.add_argument("--periods", type=_periods, default=288,
                        help="300 s periods (default 288, a day)")
    parser.add_argument("--snapshot-every", type=positive, default=12,
                        help="the agent's full snapshot every N-th period (default 12)")
    parser.add_argument("--batch-size", type=positive, default=2000)


def _periods(text: str) -> int:
    periods = positive(text)
    if periods < 2:
        raise argparse.ArgumentTypeError("at least 2 periods: the first is the untimed start")
    return periods


def bench_heartbeat_day(args: argparse.Namespace, settings: Settings) -> int:
    from hwledger.deploy.bench.heartbeat_day import SIDES, DayConfig, figures, run_day

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


def _telemetry(bench: Subparsers) -> None:
    parser = add_command(bench, "telemetry", bench_telemetry,
                         "CPU seconds per second of run: GPU sampler (recorded NVML) vs none")
    parser.add_argument("--hz", type=positive_number, default=10.0, help="sample rate (default 10)")
    parser.add_argument("--gpus", type=positive, default=8, help="GPUs sampled (default 8)")
    parser.add_argument("--seconds", type=positive_number, default=3.0, help="length of one run")
    parser.add_argument("--repeats", type=positive, default=5)


def bench_telemetry(args: argparse.Namespace, settings: Settings) -> int:
    from hwledger.deploy.bench.telemetry import run_telemetry_benchmark

    found = run_telemetry_benchmark(seconds=args.seconds, repeats=args.repeats, hz=args.hz,
                                    gpus=args.gpus)
    print(f"sampler at {found['hz']:g} Hz over {found['gpus']} GPUs "
          f"({found['samples_per_second']:g} samples/s): "
          f"{found['cpu_s_per_s_sampler']:.6f} CPU s per s of run")
    print(f"baseline, no sampler:                     "
          f"{found['cpu_s_per_s_baseline']:.6f} CPU s per s of run")
    print(f"overhead: {found['overhead_cpu_s_per_s']:.6f} CPU s per s "
          f"({100 * found['overhead_cpu_s_per_s']:.3f}% of a core), "
          f"{found['overhead_us_per_sample']:g} us per sample; medians of {found['repeats']}")
    print(json.dumps(found))
    return 0
