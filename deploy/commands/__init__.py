"""CLI subcommands, one module per area; each exposes `register(subparsers)`.

A handler takes the parsed arguments and the Settings and returns the exit code. Handlers stay
thin: they parse, call the library, and print.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol

from hwledger.deploy.config import Settings
from hwledger.schemas.secrets import JsonRedactingFormatter, RedactingFormatter

Handler = Callable[[argparse.Namespace, Settings], int]
Subparsers = Any  # argparse's _SubParsersAction is private


class CommandModule(Protocol):
    """A module of subcommands (or benchmarks): it adds itself to a subparsers object."""

    def register(self, subparsers: Subparsers) -> None: ...


def add_command(subparsers: Subparsers, name: str, handler: Handler, help_text: str
                ) -> argparse.ArgumentParser:
    """Add one subcommand whose handler `main` dispatches to."""
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text,
                                                             description=help_text)
    parser.set_defaults(handler=handler)
    return parser


def add_group(subparsers: Subparsers, name: str, help_text: str) -> Subparsers:
    """Add a command with its own subcommands (`hwledger dev up`)."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    group = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)
    return group


def wait_until_stopped() -> None:
    """Block until Ctrl-C or SIGTERM (for foreground commands that serve until stopped)."""
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()


def configure_logging(level: int | str = logging.INFO, log_format: str = "text") -> None:
    """Log lines (every logger's, uvicorn's too) to stderr, each through `redact`: plain text,
    or one JSON object a line with `log_format="json"` (HWLEDGER_LOG_FORMAT)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonRedactingFormatter() if log_format == "json" else
                         RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
