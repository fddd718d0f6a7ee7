"""The `hwledger` command: parses arguments, builds Settings, dispatches, maps errors.

A UserError (bad input, unreachable server) prints one line to stderr and exits 1; a
ConfigError (a setting, or a schema state, the command refuses) and a Kafka client property
librdkafka rejects exit 2 the same way, as do argparse usage errors; nothing a user can cause
prints a traceback. Output into a pipe whose reader has gone (`hwledger probe | head`) ends the
command quietly with 141, what a shell reports for a command SIGPIPE stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException

from hwledger.deploy.bench import cli as bench
from hwledger.deploy.commands import (
    CommandModule,
    bakeoff,
    db,
    demo,
    dev,
    produce,
    project,
    query,
    rebuild,
    status,
)
from hwledger.deploy.config import Settings
from hwledger.schemas.errors import ConfigError, UserError
from hwledger.schemas.secrets import redact
from hwledger.seeds import SeedError

BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE
COMMAND_MODULES: tuple[CommandModule, ...] = (dev, db, bench, status, project, query, produce,
                                               demo, rebuild, bakeoff)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwledger",
        description="Event-sourced GPU/CPU hardware inventory. Settings come from HWLEDGER_* "
                    "environment variables (see docs/operations.md).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.handler(args, Settings.from_env()))
        sys.stdout.flush()  # a broken pipe shows here, not in the interpreter's exit
        return code
    except ConfigError as exc:
        print(f"hwledger: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except KafkaException as exc:
        error = exc.args[0]
        if not isinstance(error, KafkaError) or error.code() != KafkaError._INVALID_ARG:
            raise
        print(f"hwledger: error: Kafka client configuration rejected: {redact(error.str())} (see "
              f"HWLEDGER_KAFKA_OPT_* and HWLEDGER_KAFKA_CONFIG_FILE)", file=sys.stderr)
        return 2
    except (UserError, SeedError) as exc:
        print(f"hwledger: error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _discard_stdout()
        return BROKEN_PIPE_EXIT


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush has no pipe to break."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
