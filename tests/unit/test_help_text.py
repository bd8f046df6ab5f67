"""--help texts: paragraphs without hand-made line breaks, so the terminal wraps them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer

from feedctl.cli.app import app
from feedctl.cli.help_text import reflow


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    yield " ".join(("feedctl", *path)), command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _own_line(line: str) -> bool:
    """A list item or an indented (code) line: the only lines kept apart."""
    return (
        line[:1].isspace()
        or line.lstrip()[:2] in ("- ", "* ", "• ")
        or (line.split(".", 1)[0].isdigit() and line.split(".", 1)[1][:1] == " ")
    )


def test_no_help_text_has_a_line_break_inside_a_paragraph() -> None:
    commands = list(_commands(typer.main.get_command(app)))
    assert len(commands) > 12
    for name, command in commands:
        assert command.help, f"{name} has no help text"
        for paragraph in command.help.split("\n\n"):
            for line in paragraph.splitlines()[1:]:
                assert _own_line(line), f"{name}: a line break inside {paragraph!r}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One line.", "One line."),
        (
            "A paragraph\nwrapped by hand.\n\nAnd another\none.",
            "A paragraph wrapped by hand.\n\nAnd another one.",
        ),
        ("Ends:\n\n\n  \nhere\nnow.\n", "Ends:\n\nhere now."),
        (
            "Steps:\n1. migrate\n2. seed it\nall\n- fan out\n* rank\n• warm",
            "Steps:\n1. migrate\n2. seed it all\n- fan out\n* rank\n• warm",
        ),
        (
            "Run:\n\n    feedctl demo\n      --users 3\nthen\nlook.",
            "Run:\n\n    feedctl demo\n      --users 3\nthen look.",
        ),
        ("Keeps\n--force and 3 when\n2026 ends", "Keeps --force and 3 when 2026 ends"),
        ("\b\nleft\nas is\n\njoined\nhere", "\b\nleft\nas is\n\njoined here"),
    ],
)
def test_reflow(text: str, expected: str) -> None:
    assert reflow(text) == expected
    assert reflow(expected) == expected  # reflowing twice changes nothing
