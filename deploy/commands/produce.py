"""Producer commands: `probe`, `publish`, `provider register|audit`, `auditor keygen`, `agent`,
`spool`.

Exit codes: 0 done; 1 a user error (one line); 2 an events file with problems (every one
listed, nothing published); 3 accepted into the spool but not acknowledged by the broker in
time (the events go out with the next publisher on this spool, e.g. `hwledger spool flush`).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hwledger.deploy.commands import (
    Subparsers,
    add_command,
    add_group,
    configure_logging,
    non_negative,
)
from hwledger.deploy.config import Settings
from hwledger.producers.agent import SNAPSHOT_EVERY, run_agent
from hwledger.producers.events import complete
from hwledger.producers.events_file import read_events
from hwledger.producers.nvml import PynvmlBackend
from hwledger.producers.probe import Prober, node_id
from hwledger.producers.probe_options import ProbeOptions
from hwledger.producers.publisher import Publisher
from hwledger.producers.runner import SnapshotTracker, require_provider_id
from hwledger.producers.spool import Spool
from hwledger.schemas.errors import UserError
from hwledger.schemas.signatures import (
    public_key_text,
    read_private_key,
    sign_audit,
    write_private_key,
)

EXIT_BAD_FILE = 2
EXIT_NOT_DELIVERED = 3
UNREGISTERED = "unregistered"

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def register(subparsers: Subparsers) -> None:
    probe = add_command(subparsers, "probe", _probe,
                        "print this host's HardwareSnapshotted payload (JSON)")
    probe.add_argument("--table", action="store_true", help="a table for people instead")
    probe.add_argument("--no-nvml", action="store_true", help="skip NVML (no NVIDIA GPUs)")

    publish = add_command(subparsers, "publish", _publish,
                          "publish this host's snapshot, or the events of a JSON-lines file")
    what = publish.add_mutually_exclusive_group(required=True)
    what.add_argument("what", nargs="?", choices=["snapshot"], metavar="snapshot",
                      help="this host's snapshot")
    what.add_argument("--events", type=Path, metavar="FILE.jsonl",
                      help='lines of {"type": "<EventName>", "data": {...}}; the whole file '
                           "is checked first (exit 2 on any problem, nothing published)")
    _timeout(publish)

    provider = add_group(subparsers, "provider", "publish provider facts")
    reg = add_command(provider, "register", _register,
                      "publish ProviderRegistered (host URI, self-declared attributes)")
    reg.add_argument("--host-uri", required=True)
    reg.add_argument("--leased-ips", type=non_negative, metavar="N",
                     help="leased IPs the provider's IP operator can lease out (default: no "
                          "IP operator, no leased IPs)")
    reg.add_argument("--reclamation-window", type=non_negative, metavar="SECONDS",
                     help="notice the provider gives before reclaiming leased capacity "
                          "(default: none offered)")
    audit = add_command(provider, "audit", _audit,
                        "publish ProviderAudited (an auditor's signed attributes; none = revoke)")
    audit.add_argument("--auditor", required=True)
    audit.add_argument("--key-file", type=Path, metavar="PEM",
                       help="the auditor's Ed25519 private key: signs the audit (required "
                            "where the projectors verify audits, HWLEDGER_AUDITOR_KEYS)")
    for parser in (reg, audit):
        parser.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--provider", help="provider id (default HWLEDGER_PROVIDER_ID)")
        _timeout(parser)

    auditor = add_group(subparsers, "auditor", "an auditor's signing keys")
    keygen = add_command(auditor, "keygen", _keygen,
                         "write a new Ed25519 private key file; print its public key for "
                         "HWLEDGER_AUDITOR_KEYS")
    keygen.add_argument("--key-file", type=Path, required=True, metavar="PEM",
                        help="the private key file to create (mode 0600; never overwritten)")

    agent = add_command(subparsers, "agent", _agent,
                        "publish a snapshot at start and on hardware change, a heartbeat "
                        "(NodeHeartbeated) every interval")
    agent.add_argument("--interval", type=float, default=300.0,
                       help="heartbeat every this many seconds (default 300)")
    agent.add_argument("--snapshot-every", type=int, default=SNAPSHOT_EVERY, metavar="N",
                       help="every N-th heartbeat is a full snapshot, the safety net "
                            f"(default {SNAPSHOT_EVERY})")
    agent.add_argument("--check-interval", type=float, default=30.0,
                       help="re-probe for changes every this many seconds (default 30)")

    spool = add_group(subparsers, "spool", "the on-disk spool of events not yet delivered")
    add_command(spool, "status", _spool_status, "what waits in the spool")
    flush = add_command(spool, "flush", _spool_flush, "deliver what waits in the spool")
    _timeout(flush, default=30.0)


def _timeout(parser: argparse.ArgumentParser, default: float = 10.0) -> None:
    parser.add_argument("--timeout", type=float, default=default,
                        help=f"seconds to wait for the broker's acknowledgement (default "
                             f"{default:g}); what is not acknowledged stays spooled")


def parse_attributes(items: list[str]) -> list[dict[str, str]]:
    """['region=us-west', ...] -> [{"key": "region", "value": "us-west"}, ...]."""
    attributes = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--attr {item!r} is not KEY=VALUE")
        attributes.append({"key": key.strip(), "value": value})
    return attributes


def _probe_once(settings: Settings, provider_id: str, *, nvml: bool = True) -> dict[str, Any]:
    """This host's snapshot; probe warnings (no NVML) go to stderr."""
    prober = Prober(provider_id, node_id(settings.node_id, settings.home),
                    ProbeOptions.from_env(), open_nvml=PynvmlBackend if nvml else None)
    result = prober.probe()
    prober.close()
    for warning in result.warnings:
        err_console.print(f"warning: {warning}")
    return result.snapshot


def _deliver(publisher: Publisher, timeout: float, accepted: int) -> int:
    left = publisher.close(timeout)
    if left == 0:
        console.print(f"published {accepted} event(s)")
        return 0
    err_console.print(
        f"{accepted} event(s) accepted; {left} spooled event(s) not yet acknowledged by the "
        f"broker (last error: {publisher.last_error or 'none'}); they stay in "
        f"{publisher.spool.directory} and go out with `hwledger spool flush`")
    return EXIT_NOT_DELIVERED


def _probe(args: argparse.Namespace, settings: Settings) -> int:
    snapshot = _probe_once(settings, settings.provider_id or UNREGISTERED,
                           nvml=not args.no_nvml)
    if args.table:
        console.print(snapshot_table(snapshot))
    else:
        print(json.dumps(snapshot, indent=2, default=_json_default))
    return 0


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def snapshot_table(snapshot: dict[str, Any]) -> Table:
    system, software = snapshot["system"], snapshot["software"]
    table = Table(title=f"node {snapshot['node_id']} (provider {snapshot['provider_id']})")
    for column in ("slot", "gpu", "token", "VRAM GiB", "interface", "native link",
                   "actual link", "power W"):
        table.add_column(column)
    for g in snapshot["gpus"]:
        table.add_row(str(g["slot_index"]), g["name"], f"{g['vendor']}/{g['model']}",
                      f"{g['vram_bytes'] / 2**30:.0f}", g["interface"],
                      g["slot_native_interface"] or "-", g["actual_interface"] or "-",
                      str(g["power_limit_w"] or "-"))
    table.caption = (
        f"{system['cpu_model']} ({system['cpu_cores']} cores / {system['cpu_threads']} threads, "
        f"{system['architecture']}), RAM {system['ram_bytes'] / 2**30:.1f} GiB, "
        f"board {system['motherboard'] or '-'}; {software['os']}, kernel "
        f"{software['kernel_version']}, driver {software['gpu_driver_version'] or '-'}, "
        f"CUDA {software['cuda_version'] or '-'}")
    return table


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    if args.events is not None:
        return _publish_file(args.events, args.timeout, settings)
    snapshot = _probe_once(settings, require_provider_id(settings))
    publisher = Publisher.from_settings(settings)
    publisher.publish("HardwareSnapshotted", snapshot)
    return _deliver(publisher, args.timeout, 1)


def _publish_file(path: Path, timeout: float, settings: Settings) -> int:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from exc
    events, errors = read_events(raw)
    if errors:
        for error in errors:
            print(f"{path}:{error}", file=sys.stderr)
        print(f"hwledger: error: {len(errors)} problem(s) in {path}; nothing published",
              file=sys.stderr)
        return EXIT_BAD_FILE
    publisher = Publisher.from_settings(settings)
    publisher.publish_encoded(events)
    return _deliver(publisher, timeout, len(events))


def _publish_provider_event(args: argparse.Namespace, settings: Settings, event_type: str,
                            fields: dict[str, Any],
                            seal: Callable[[dict[str, Any]], dict[str, Any]] = dict) -> int:
    """Publish a provider fact; `seal` finishes the complete payload (signs an audit)."""
    provider_id = args.provider or require_provider_id(settings)
    data = complete({"provider_id": provider_id, "attributes": parse_attributes(args.attr),
                     **fields})
    publisher = Publisher.from_settings(settings)
    publisher.publish(event_type, seal(data))
    return _deliver(publisher, args.timeout, 1)



def _register(args: argparse.Namespace, settings: Settings) -> int:
    return _publish_provider_event(args, settings, "ProviderRegistered", {
        "host_uri": args.host_uri, "leased_ip_capacity": args.leased_ips,
        "reclamation_window": args.reclamation_window})


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    if args.key_file is None:
        return _publish_provider_event(args, settings, "ProviderAudited",
                                       {"auditor": args.auditor})
    key = read_private_key(args.key_file)
    return _publish_provider_event(args, settings, "ProviderAudited", {"auditor": args.auditor},
                                   lambda data: sign_audit(data, key))


def _keygen(args: argparse.Namespace, settings: Settings) -> int:
    key = write_private_key(args.key_file)
    err_console.print(f"wrote {args.key_file}; its public key, for HWLEDGER_AUDITOR_KEYS:")
    print(public_key_text(key))
    return 0


def _agent(args: argparse.Namespace, settings: Settings) -> int:
    if args.interval <= 0 or args.check_interval <= 0 or args.snapshot_every <= 0:
        raise UserError("--interval, --check-interval and --snapshot-every must be positive")
    configure_logging(logging.WARNING, settings.log_format)
    prober = Prober(require_provider_id(settings), node_id(settings.node_id, settings.home),
                    ProbeOptions.from_env())
    publisher = Publisher.from_settings(settings)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    console.print(f"agent for node {prober.node_id} of provider {prober.provider_id}: "
                  f"heartbeat every {args.interval:g}s, a full snapshot every "
                  f"{args.snapshot_every}; SIGTERM stops it")

    def report(reason: str, event_id: str) -> None:
        kind = "heartbeat" if reason == "heartbeat" else "snapshot"
        console.print(f"{time.strftime('%H:%M:%S')} {kind} {event_id} ({reason})")

    try:
        count = run_agent(SnapshotTracker(prober, publisher), stop, heartbeat_s=args.interval,
                          check_s=args.check_interval, snapshot_every=args.snapshot_every,
                          report=report)
    finally:
        left = publisher.close(5.0)
        prober.close()
    console.print(f"stopped after {count} event(s); {left} event(s) left in the spool")
    return 0


def _spool_status(args: argparse.Namespace, settings: Settings) -> int:
    spool = Spool(settings.home / "spool")
    status = spool.status()
    spool.close()
    oldest = (f"{time.time() - status.oldest_spooled_at:.0f}s ago"
              if status.oldest_spooled_at is not None else "-")
    console.print(f"spool      {status.path}")
    console.print(f"pending    {status.pending} event(s), {status.pending_bytes} bytes; "
                  f"oldest spooled {oldest}")
    console.print(f"flusher    {f'pid {status.flusher_pid}' if status.flusher_pid else 'none'}")
    for provider, count in status.by_provider.items():
        console.print(f"  {provider}: {count}")
    return 0


def _spool_flush(args: argparse.Namespace, settings: Settings) -> int:
    publisher = Publisher.from_settings(settings)
    return _deliver(publisher, args.timeout, publisher.pending())


