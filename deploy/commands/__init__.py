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
from typing import Any, Protocol, TypeVar

from hwledger.deploy.config import Settings
from hwledger.schemas.secrets import JsonRedactingFormatter, RedactingFormatter

Handler = Callable[[argparse.Namespace, Settings], int]
N = TypeVar("N", int, float)
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


def number(convert: Callable[[str], N], kind: str, accept: Callable[[N], bool], rule: str
           ) -> Callable[[str], N]:
    """An argparse `type`: the text as `convert` reads it (else "'x' is not `kind`"), refused
    unless `accept` holds (else "value `rule`"): argparse turns both into a usage error."""
    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{value} {rule}")
        return value
    return parse


positive = number(int, "an integer", lambda v: v >= 1, "must be at least 1")
non_negative = number(int, "an integer", lambda v: v >= 0, "must not be negative")
positive_number = number(float, "a number", lambda v: v > 0, "must be positive")


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
