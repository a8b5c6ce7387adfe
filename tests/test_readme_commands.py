"""Every ``featbench`` command the README and docs/ show parses: its subcommand exists and
click accepts its options and arguments (nothing is run); the README's copy of the study
table is the one the study's records give; its links and images exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from featbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]


def readme_commands(pages=DOCS) -> list[str]:
    """``featbench ...`` lines of the pages' shell blocks (continuations joined,
    comments and pipes cut)."""
    blocks, current, lang = [], None, ""
    for line in "\n".join(p.read_text() for p in pages).splitlines():
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
    assert len(readme_commands([README])) >= 15
    assert len(COMMANDS) >= 40  # the docs' too


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


def test_the_readme_table_is_the_one_the_records_give():
    """Each ``<!-- study-table: FOLDER -->`` block equals the summary of FOLDER's records
    (``featbench plot FOLDER --readme README.md`` rewrites it)."""
    from featbench.report import README_BLOCK, select_records, study_table, summary_markdown

    blocks = list(README_BLOCK.finditer(README.read_text()))
    assert blocks, "the README shows the study's table"
    for m in blocks:
        records, _ = select_records(ROOT / m["folder"])
        assert m["body"] == summary_markdown(study_table(records)), (
            f"README's table of {m['folder']} is stale: run featbench plot {m['folder']} "
            f"--readme README.md")


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_links_and_images_exist(page):
    """Every relative link and image of the README and docs/ names a file that exists."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.name}: {target} does not exist"
