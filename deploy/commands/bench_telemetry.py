"""`hwledger bench telemetry`: the run sampler's CPU per second of run vs no sampler."""

from __future__ import annotations

import argparse
import json

from hwledger.deploy.commands import Subparsers, add_command, positive, positive_number
from hwledger.deploy.config import Settings
from hwledger.producers.telemetry_bench import run_telemetry_benchmark


def register(bench_group: Subparsers) -> None:
    parser = add_command(bench_group, "telemetry", _bench,
                         "CPU seconds per second of run: GPU sampler (recorded NVML) vs none")
    parser.add_argument("--hz", type=positive_number, default=10.0, help="sample rate (default 10)")
    parser.add_argument("--gpus", type=positive, default=8, help="GPUs sampled (default 8)")
    parser.add_argument("--seconds", type=positive_number, default=3.0, help="length of one run")
    parser.add_argument("--repeats", type=positive, default=5)


def _bench(args: argparse.Namespace, settings: Settings) -> int:
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
