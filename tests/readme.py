"""The README's code blocks, read by the tests that run them (tests/unit/test_readme.py and
tests/integration/test_readme_snippets.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"^```(?P<language>\w+)\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    """The bodies of the README's fenced blocks in `language`, in order."""
    text = README.read_text("utf-8")
    return [m["body"] for m in _BLOCK.finditer(text) if m["language"] == language]


def hwledger_commands() -> list[list[str]]:
    """Every `hwledger ...` command of the README's bash blocks (continued lines joined,
    comment dropped), split as the shell would: the arguments after `hwledger`."""
    commands = []
    for body in blocks("bash"):
        for line in body.replace("\\\n", " ").splitlines():  # a trailing \ continues a line
            words = shlex.split(line, comments=True)
            if words and words[0] == "hwledger":
                commands.append(words[1:])
    return commands
