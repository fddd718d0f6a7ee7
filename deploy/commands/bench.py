"""`hwledger bench <name>`: benchmarks that print their figures and a side-by-side baseline.

Each benchmark module exposes `register(bench_subparsers)` and ends its output with one JSON
line of figures. Results with the command that made them go to docs/performance.md.
"""

from __future__ import annotations

from hwledger.deploy.commands import (
    CommandModule,
    Subparsers,
    add_group,
    bench_gpus,
    bench_heartbeat_day,
    bench_project,
    bench_rebuild,
    bench_soak,
    bench_telemetry,
    produce,
    query,
)

BENCHMARK_MODULES: tuple[CommandModule, ...] = (query.BENCHMARK, produce.BENCHMARK,
                                                 bench_project, bench_rebuild, bench_soak,
                                                 bench_gpus, bench_heartbeat_day, bench_telemetry)


def register(subparsers: Subparsers) -> None:
    bench = add_group(subparsers, "bench", "benchmarks (figures + side-by-side baseline)")
    for module in BENCHMARK_MODULES:
        module.register(bench)
