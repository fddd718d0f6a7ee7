"""`hwledger import DIR`: publish the events a bakeoff data directory implies.

Reads `hardware-snapshot/*.json` and `runs/*.json` (docs/bakeoff.md), maps each file with
`producers.bakeoff` and publishes through the normal Publisher. A file that cannot be read or
mapped is reported with its path and reason and skipped; the rest is imported.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import track

from hwledger.deploy.commands import Subparsers, add_command
from hwledger.deploy.config import Settings
from hwledger.producers.bakeoff import BakeoffError, Event, run_events, snapshot_events
from hwledger.producers.events import InvalidEventError, encode_event
from hwledger.producers.publisher import Publisher
from hwledger.schemas.errors import UserError

DEFAULT_PROVIDER = "bakeoff"
EXIT_NOT_DELIVERED = 3
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


@dataclass
class ImportResult:
    """What an import published and which files it skipped (path, reason)."""

    files: int = 0
    events: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "import", _import,
                         "publish the events of a bakeoff data directory (runs, hardware)")
    parser.add_argument("directory", type=Path, metavar="DIR")
    parser.add_argument("--provider", help=f"provider id (default HWLEDGER_PROVIDER_ID, else "
                                           f"{DEFAULT_PROVIDER!r})")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for the broker's acknowledgement (default 30)")


def _file_events(path: Path, provider_id: str) -> list[Event]:
    try:
        doc = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise BakeoffError(f"cannot read: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BakeoffError(f"not valid JSON: {exc}") from None
    if path.parent.name == "hardware-snapshot":
        return snapshot_events(doc, provider_id, path.stem)
    return run_events(doc, provider_id)


def data_files(directory: Path) -> list[Path]:
    """The hardware-snapshot and run files of a bakeoff data directory, in import order."""
    if not (directory / "runs").is_dir() and not (directory / "hardware-snapshot").is_dir():
        raise UserError(f"{directory} has neither runs/ nor hardware-snapshot/ (not a bakeoff "
                        "data directory)")
    return [*sorted((directory / "hardware-snapshot").glob("*.json")),
            *sorted((directory / "runs").glob("*.json"))]


def import_directory(directory: Path, provider_id: str, publisher: Publisher,
                     progress: bool = False) -> ImportResult:
    """Map and publish every bakeoff file under `directory`; unmappable files are skipped."""
    result = ImportResult()
    for path in track(data_files(directory), description="importing", disable=not progress,
                      console=err_console):
        try:
            encoded = [encode_event(kind, data) for kind, data in _file_events(path,
                                                                               provider_id)]
        except (BakeoffError, InvalidEventError) as exc:
            result.skipped.append((path, str(exc)))
            continue
        publisher.publish_encoded(encoded)
        result.files += 1
        result.events += len(encoded)
    return result


def _import(args: argparse.Namespace, settings: Settings) -> int:
    provider_id = args.provider or settings.provider_id or DEFAULT_PROVIDER
    data_files(args.directory)  # a wrong directory fails before any broker is needed
    publisher = Publisher.from_settings(settings)
    try:
        result = import_directory(args.directory, provider_id, publisher, progress=True)
    finally:
        left = publisher.close(args.timeout)
    for path, reason in result.skipped:
        err_console.print(f"skipped {path}: {reason}")
    console.print(f"imported {result.files} file(s) as {result.events} event(s) for provider "
                  f"{provider_id}; {len(result.skipped)} file(s) skipped")
    if left:
        err_console.print(f"{left} event(s) not yet acknowledged by the broker; they go out "
                          "with `hwledger spool flush`")
        return EXIT_NOT_DELIVERED
    return 0
