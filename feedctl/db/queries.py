"""Named SQL blocks loaded once from queries.sql (the only place SQL text lives).

A block starts with a line `-- name --`, then a line of description, then SQL.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import LiteralString

_HEADER = re.compile(r"^-- ([a-z0-9_]+) --$", re.MULTILINE)


def parse_blocks(text: str) -> dict[str, LiteralString]:
    """Split a queries file into {name: sql}."""
    blocks: dict[str, LiteralString] = {}
    matches = list(_HEADER.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        _description, _, body = text[match.end() : end].strip().partition("\n")
        if match.group(1) in blocks:
            raise ValueError(f"query {match.group(1)!r} is defined twice")
        blocks[match.group(1)] = body.strip()
    return blocks


@functools.cache
def _blocks() -> dict[str, LiteralString]:
    text = resources.files("feedctl.db").joinpath("queries.sql").read_text(encoding="utf-8")
    return parse_blocks(text)


def query(name: str) -> LiteralString:
    """The SQL of one named block."""
    return _blocks()[name]
