"""`--help` texts as paragraphs that the terminal wraps to its width.

Command docstrings are wrapped by hand in the source. Typer's rich help keeps those line
breaks, which gives ragged lines at any other width. `reflow` joins the lines of each
paragraph (paragraphs are separated by blank lines) and keeps on their own lines the list
items (lines starting with "- ", "* ", "• " or "1. ") and indented lines (code). A
paragraph starting with Click's "\b" marker is left as it is.
"""

from __future__ import annotations

import re
from typing import Any

_LIST_ITEM = re.compile(r"(?:[-*•]|\d+\.)\s")
_PARAGRAPH_BREAK = re.compile(r"\n(?:[ \t]*\n)+")
_NO_REWRAP = "\b"


def reflow(text: str) -> str:
    """The text with the line breaks inside its paragraphs replaced by spaces."""
    paragraphs = _PARAGRAPH_BREAK.split(text.strip("\n"))
    return "\n\n".join(_reflow_paragraph(p.rstrip()) for p in paragraphs if p.strip())


def reflow_help(command: Any) -> None:
    """Reflow a Click command's help text in place (nothing to do without one)."""
    if command.help:
        command.help = reflow(command.help)


def _reflow_paragraph(paragraph: str) -> str:
    if paragraph.startswith(_NO_REWRAP):
        return paragraph
    lines: list[str] = []
    after_code = True  # a plain line never joins an indented (code) line
    for line in paragraph.splitlines():
        if line[:1].isspace():
            lines.append(line.rstrip())
            after_code = True
        elif _LIST_ITEM.match(line) or after_code:
            lines.append(line.strip())
            after_code = False
        else:
            lines[-1] = f"{lines[-1]} {line.strip()}"
    return "\n".join(lines)
