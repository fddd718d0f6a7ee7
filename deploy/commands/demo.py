"""`hwledger demo`: the whole system on this machine, answering a sample GPU request.

Starts (or reuses) the servers, migrates and seeds, runs the projector and the query service,
publishes this machine's snapshot plus the demo fleet from `seeds/`, prints the answer to
`seeds/demo_request.json`, then keeps serving until Ctrl-C (`--once` exits after the answer).
"""

from __future__ import annotations

import argparse
import platform
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hwledger.deploy.commands import Subparsers, add_command, wait_until_stopped
from hwledger.deploy.commands.query import read_group_spec
from hwledger.deploy.config import Settings
from hwledger.deploy.live import LiveSystem, live_system
from hwledger.producers.nvml import PynvmlBackend
from hwledger.producers.probe import Prober, node_id
from hwledger.producers.probe_options import ProbeOptions
from hwledger.producers.publisher import Publisher
from hwledger.schemas.errors import UserError
from hwledger.seeds.demo import demo_fleet_events

console = Console()


def register(subparsers: Subparsers) -> None:
    demo = add_command(subparsers, "demo", _demo,
                       "run everything locally and answer a sample GPU request")
    demo.add_argument("--once", action="store_true", help="exit after printing the answer")
    demo.add_argument("--request", type=Path,
                      help="a GroupSpec JSON file (default: seeds/demo_request.json)")


def _request(path: Path | None) -> Any:
    """The GroupSpec document to ask, checked before anything starts."""
    document, _ = read_group_spec(
        path or resources.files("hwledger.seeds").joinpath("demo_request.json"))
    return document


def _publish(system: LiveSystem) -> int:
    settings = system.settings
    provider_id = settings.provider_id or f"local-{platform.node() or 'host'}"
    prober = Prober(provider_id, node_id(settings.node_id, settings.home),
                    ProbeOptions.from_env(), open_nvml=PynvmlBackend)
    probe = prober.probe()
    prober.close()
    for warning in probe.warnings:
        console.print(f"[yellow]probe: {warning}[/]")
    events: list[tuple[str, dict[str, Any]]] = [
        ("ProviderRegistered", {"provider_id": provider_id,
                                "host_uri": f"https://{platform.node() or 'localhost'}:8443",
                                "attributes": [{"key": "host", "value": "akash"}]}),
        ("HardwareSnapshotted", probe.snapshot),
        *demo_fleet_events(datetime.now(UTC)),
    ]
    with Publisher(settings.kafka_config(), settings.topic, settings.home / "spool") as publisher:
        publisher.publish_many(events)
        left = publisher.flush(30)
    if left:
        raise UserError(f"{left} demo events were not acknowledged by the broker within 30s; "
                        "they stay spooled (`hwledger spool status`)")
    return len(events)


def _answer_table(answer: dict[str, Any]) -> Table:
    table = Table(title=f"{len(answer['providers'])} provider(s) can host the request")
    table.add_column("owner", no_wrap=True)
    for column in ("gpu models", "auditors", "placement (node x replicas, GPU slots)"):
        table.add_column(column, overflow="fold")
    for p in answer["providers"]:
        table.add_row(p["owner"], " ".join(m for m in p["gpuModels"] if "/" in m),
                      str(len(p["auditedBy"])),
                      escape(" ".join(f"{u['node']}x{u['count']}{u['gpuSlots']}"
                                      for u in p.get("placement", []))))
    return table


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    request = _request(args.request)
    console.print("starting the local stack, the projector and the query service ...")
    with live_system(settings) as system:
        published = _publish(system)
        console.print(f"published {published} events; waiting for the projector ...")
        system.wait_for_events(published)
        answer = system.post("/v1/bid-screening?exact=true", request)
        console.print(_answer_table(answer))
        console.print(f"fleet console: {system.query_url}/   API: {system.query_url}/docs   "
                      f"database: {system.schema}")
        if args.once:
            return 0
        console.print("serving; Ctrl-C stops everything")
        wait_until_stopped()
    return 0
