"""Named SQL blocks loaded once from the .sql files in feedctl/db/queries/.

A block starts with a line `-- name --`, then a line of description, then SQL. Names are
unique across all the files; one file per area of the pipeline.
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
    blocks: dict[str, LiteralString] = {}
    folder = resources.files("feedctl.db.queries")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        for name, body in parse_blocks(entry.read_text(encoding="utf-8")).items():
            if name in blocks:
                raise ValueError(f"query {name!r} is defined twice ({entry.name})")
            blocks[name] = body
    return blocks


def query(name: str) -> LiteralString:
    """The SQL of one named block."""
    return _blocks()[name]
