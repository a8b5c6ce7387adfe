"""Every ``featbench`` command the README shows parses: its subcommand exists and click
accepts its options and arguments (nothing is run)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from featbench.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    """``featbench ...`` lines of the README's shell blocks (continuations joined,
    comments and pipes cut)."""
    blocks, current, lang = [], None, ""
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            if current is None:
                current, lang = [], line[3:].strip()
            else:
                if lang in ("", "bash", "sh", "console"):
                    blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    out = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #")[0].strip()
            for part in re.split(r"&&|\|", line):
                part = part.strip()
                if part.startswith("featbench "):
                    out.append(part)
    return out


COMMANDS = readme_commands()


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_parses(line):
    args = shlex.split(line)[1:]
    ctx = main.make_context("featbench", list(args), resilient_parsing=False)
    with ctx:
        name, cmd, rest = main.resolve_command(ctx, ctx.protected_args + ctx.args)
        assert cmd is not None, line
        try:
            cmd.make_context(name, list(rest))
        except click.exceptions.Exit:
            pass  # --help
