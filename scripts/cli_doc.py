"""Write every feedctl command's `--help` into docs/cli.md: `make docs`.

docs/cli.md is hand-written prose around generated blocks, one per command:

    <!-- generated: feedctl cache warm --help -->
    ```text
    Usage: feedctl cache warm [OPTIONS]
    ...
    ```
    <!-- end generated -->

This script rewrites what is between the markers and leaves the prose alone. A command
that has no block yet gets a new section at the end of the file; a block whose command no
longer exists is an error naming it (its prose has to go, or move, by hand). With
`--check` it writes nothing and exits 1 when docs/cli.md is not what it would write.

The help is Click's plain-text rendering (no Rich boxes or colours) at a fixed width, so the
text is the same on every terminal, in CI and in a test. The global options, which every
command accepts too, are listed once, under `feedctl`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
import typer.main

from feedctl.cli.app import app
from feedctl.cli.global_options import PANEL as GLOBAL_OPTIONS_PANEL

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
WIDTH = 100
_BLOCK = re.compile(
    r"<!-- generated: (?P<path>[a-z][a-z0-9 _-]*?) --help -->\n.*?<!-- end generated -->",
    re.DOTALL,
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def commands() -> Iterator[tuple[str, Any]]:
    """Every command of the CLI as (`feedctl cache warm`, its Click command), parents first."""
    root = typer.main.get_command(app)
    yield from _walk("feedctl", root)


def _walk(path: str, command: Any) -> Iterator[tuple[str, Any]]:
    yield path, command
    for name, child in getattr(command, "commands", {}).items():
        if not child.hidden:
            yield from _walk(f"{path} {name}", child)


def is_runnable(command: Any) -> bool:
    """A command that does something itself: not a group, or a group that runs without a
    subcommand (such as `feedctl rank`)."""
    return not hasattr(command, "commands") or bool(command.invoke_without_command)


def help_texts() -> dict[str, str]:
    """The plain-text `--help` of every command, by command path."""
    texts: dict[str, str] = {}
    contexts: dict[str, typer.Context] = {}
    for path, command in commands():
        parent_path, _, name = path.rpartition(" ")
        context = typer.Context(
            command,
            info_name=name,
            parent=contexts.get(parent_path),
            terminal_width=WIDTH,
            max_content_width=WIDTH,
        )
        contexts[path] = context
        texts[path] = _plain_help(command, context, is_root=not parent_path)
    return texts


def _plain_help(command: Any, context: typer.Context, *, is_root: bool) -> str:
    # The tree comes fresh from get_command, so changing it here changes nothing else.
    command.rich_markup_mode = None  # Click's formatter: no boxes, colours or markup
    if not is_root:
        command.params = [
            p for p in command.params if getattr(p, "rich_help_panel", None) != GLOBAL_OPTIONS_PANEL
        ]
    if command.help:
        command.help = keep_line_breaks(command.help)
    text = _ANSI.sub("", command.get_help(context))
    return "\n".join(line.rstrip() for line in text.splitlines())


def keep_line_breaks(help_text: str) -> str:
    """Mark paragraphs of several lines (list items, code) so Click does not rewrap them,
    as the Rich help does not: help texts are already reflowed (feedctl/cli/help_text.py)."""
    paragraphs = help_text.split("\n\n")
    return "\n\n".join(
        f"\b\n{p}" if "\n" in p.strip("\n") and not p.startswith("\b") else p for p in paragraphs
    )


def block(path: str, text: str) -> str:
    return f"<!-- generated: {path} --help -->\n```text\n{text}\n```\n<!-- end generated -->"


class StaleBlockError(Exception):
    """docs/cli.md has a block for a command that does not exist."""


def regenerate(document: str, texts: dict[str, str]) -> str:
    """The document with every block rewritten and a section added for each command that
    has none."""
    stale = [m["path"] for m in _BLOCK.finditer(document) if m["path"] not in texts]
    if stale:
        names = ", ".join(f"`{path}`" for path in stale)
        raise StaleBlockError(
            f"{DOC.name} documents {names}, which no longer exist: remove or rename those "
            "sections (and their prose), then run `make docs` again"
        )
    documented = {m["path"] for m in _BLOCK.finditer(document)}
    document = _BLOCK.sub(lambda m: block(m["path"], texts[m["path"]]), document)
    missing = [path for path in texts if path not in documented]
    for path in missing:
        document = f"{document.rstrip()}\n\n## {path}\n\n{block(path, texts[path])}\n"
    return document


def documented_commands(document: str) -> set[str]:
    return {m["path"] for m in _BLOCK.finditer(document)}


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        print("usage: python scripts/cli_doc.py [--check]", file=sys.stderr)
        return 2
    current = DOC.read_text(encoding="utf-8")
    try:
        wanted = regenerate(current, help_texts())
    except StaleBlockError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if check:
        if wanted != current:
            print(f"{DOC} is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        DOC.write_text(wanted, encoding="utf-8")
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
