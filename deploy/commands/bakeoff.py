"""`hwledger import DIR` and `hwledger export DIR`: bakeoff data directories in and out.

Import reads `hardware-snapshot/*.json` and `runs/*.json` (docs/bakeoff.md), maps each file
with `producers.bakeoff` and publishes through the normal Publisher. A file that cannot be read
or mapped is reported with its path and reason and skipped; the rest is imported. Export reads
the read model in one snapshot, plans the files with `producers.bakeoff_export` and writes each
changed one atomically (a temp file in the same folder, then rename).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from rich.console import Console
from rich.progress import track
from sqlalchemy import Select

from hwledger.deploy.commands import Subparsers, add_command
from hwledger.deploy.config import Settings
from hwledger.producers.bakeoff import (
    BakeoffError,
    parse_time,
    run_events,
    snapshot_events,
    system_of,
)
from hwledger.producers.bakeoff_export import ReadModel, audited, planned_files, render
from hwledger.producers.bakeoff_reads import (
    gpu_links_statement,
    gpu_usage_statement,
    interface_types_statement,
    runs_statement,
    software_statement,
    system_hardware_statement,
    systems_statement,
)
from hwledger.producers.events import EncodedEvent, InvalidEventError, encode_event
from hwledger.producers.publisher import Publisher
from hwledger.query.repository import compiled
from hwledger.schemas import gpu_specs
from hwledger.schemas.db import connect
from hwledger.schemas.errors import UserError
from hwledger.schemas.events import EventData
from hwledger.schemas.json_file import read_json
from hwledger.schemas.migrations import migrated_schema

DEFAULT_PROVIDER = "bakeoff"
EXIT_NOT_DELIVERED = 3
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


@dataclass
class ImportResult:
    """What an import published, the hardware-snapshot files a run file of the same directory
    already holds (`covered`), and which files it skipped (path, reason)."""

    files: int = 0
    events: int = 0
    covered: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)


@dataclass
class ExportResult:
    """What an export wrote, left as it was (same content), and left out (what, why)."""

    written: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "import", _import,
                         "publish the events of a bakeoff data directory (runs, hardware)")
    parser.add_argument("directory", type=Path, metavar="DIR")
    parser.add_argument("--provider", help=f"provider id (default HWLEDGER_PROVIDER_ID, else "
                                           f"{DEFAULT_PROVIDER!r})")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for the broker's acknowledgement (default 30)")
    export = add_command(subparsers, "export", _export,
                         "write the read model as bakeoff data directories, one per provider")
    export.add_argument("directory", type=Path, metavar="DIR")
    export.add_argument("--provider", help="only this provider")
    export.add_argument("--since", metavar="TIME",
                        help="only runs finished and systems snapshotted at or after this "
                             "ISO-8601 time (UTC when no offset is given)")


def _file_events(path: Path, provider_id: str) -> list[EventData]:
    doc = read_json(path, BakeoffError)
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
    """Map and publish every bakeoff file under `directory`; unmappable files are skipped.

    A hardware-snapshot file is bakeoff's dedup cache of the hardware its run files embed: one
    whose system a run file of the directory embeds is not published again."""
    result = ImportResult()
    mapped: list[tuple[Path, list[EventData], list[EncodedEvent]]] = []
    for path in track(data_files(directory), description="importing", disable=not progress,
                      console=err_console):
        try:
            events = _file_events(path, provider_id)
            mapped.append((path, events, [encode_event(kind, data) for kind, data in events]))
        except (BakeoffError, InvalidEventError) as exc:
            result.skipped.append((path, str(exc)))
    embedded = {system_of(events[0][1]) for path, events, _ in mapped
                if path.parent.name == "runs"}
    for path, events, encoded in mapped:
        if path.parent.name == "hardware-snapshot" and system_of(events[0][1]) in embedded:
            result.covered += 1
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
                  f"{provider_id}; {result.covered} hardware-snapshot file(s) already in a run "
                  f"file; {len(result.skipped)} file(s) skipped")
    if left:
        err_console.print(f"{left} event(s) not yet acknowledged by the broker; they go out "
                          "with `hwledger spool flush`")
        return EXIT_NOT_DELIVERED
    return 0


def read_model(conn: psycopg.Connection[Any], provider_id: str | None,
               since: datetime | None) -> ReadModel:
    """The rows of an export, all read in one REPEATABLE READ, read-only transaction."""
    def rows(statement: Select[Any]) -> list[dict[str, Any]]:
        query, params = compiled(statement)
        with conn.cursor(row_factory=dict_row) as cursor:
            return cursor.execute(query, params).fetchall()

    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    with conn.transaction():
        return ReadModel(
            runs=rows(runs_statement(provider_id, since)),
            gpu_usage=rows(gpu_usage_statement(provider_id)),
            systems=rows(systems_statement(provider_id)),
            system_hardware=rows(system_hardware_statement(provider_id)),
            gpu_links=rows(gpu_links_statement(provider_id)),
            software=rows(software_statement(provider_id)),
            interface_types=rows(interface_types_statement()),
            gpu_specs=rows(gpu_specs.specs_statement()),
            gpu_tflops=rows(gpu_specs.tflops_statement()),
            compute_formats=[r["name"] for r in rows(gpu_specs.formats_statement())])


def _existing(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to a temp file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def export_directory(model: ReadModel, directory: Path, since: datetime | None,
                     now: datetime, progress: bool = False) -> ExportResult:
    """Write the planned files of `model` under `directory`; unchanged ones are left alone."""
    planned, skipped = planned_files(model, since)
    result = ExportResult(skipped=skipped)
    for item in track(planned, description="exporting", disable=not progress,
                      console=err_console):
        path = directory / item.path
        document = audited(item.content, _existing(path), item.created, now)
        if document is None:
            result.unchanged += 1
            continue
        write_atomically(path, render(document))
        result.written += 1
    return result


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value, "--since")
    except BakeoffError as exc:
        raise UserError(str(exc)) from None


def _export(args: argparse.Namespace, settings: Settings) -> int:
    since = _since(args.since)
    if args.directory.exists() and not args.directory.is_dir():
        raise UserError(f"{args.directory} exists and is not a directory")
    url = settings.require_database_url()
    with connect(url, migrated_schema(url, settings.db_schema)) as conn:
        model = read_model(conn, args.provider, since)
    try:
        result = export_directory(model, args.directory, since, datetime.now(UTC),
                                  progress=True)
    except OSError as exc:
        raise UserError(f"cannot write under {args.directory}: {exc.strerror} "
                        f"({exc.filename})") from None
    for what, reason in result.skipped:
        err_console.print(f"skipped {what}: {reason}")
    console.print(f"exported {len(model.runs)} finished run(s) of "
                  f"{len({s['provider_id'] for s in model.systems})} provider(s) into "
                  f"{args.directory}: {result.written} file(s) written, {result.unchanged} "
                  f"unchanged; {len(result.skipped)} record(s) skipped")
    return 0
