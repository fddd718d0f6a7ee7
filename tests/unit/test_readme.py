"""The README's snippets are what the code accepts: every `hwledger` command line parses, the
GroupSpec example is a valid request, the Python example compiles (it runs against a real broker
in tests/integration/test_readme_snippets.py)."""

from __future__ import annotations

import json

import pytest

from hwledger.deploy.cli import build_parser
from hwledger.query.aggregator import parse_group_spec
from hwledger.query.screening_filter import screening_filter
from tests.readme import blocks, hwledger_commands


def test_the_readme_shows_commands_and_examples() -> None:
    assert len(hwledger_commands()) >= 30
    assert len(blocks("json")) == 1 and len(blocks("python")) == 1


@pytest.mark.parametrize("args", hwledger_commands(), ids=" ".join)
def test_every_readme_command_line_parses(args: list[str]) -> None:
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:  # argparse refused it: the README shows a command that is not
        pytest.fail(f"hwledger {' '.join(args)}: refused by the CLI (exit {exc.code})")


def test_the_readme_request_is_a_valid_group_spec() -> None:
    request = parse_group_spec(json.loads(blocks("json")[0]))
    screen = screening_filter(request)
    assert screen.total_gpu == 8 and screen.max_node_gpu == 4
    assert screen.signed_by_any_of == ("akash1...",) and screen.total_persistent > 0


def test_the_readme_python_example_compiles() -> None:
    compile(blocks("python")[0], "README.md", "exec")
