"""Named SQL blocks: the parser, and every block shipped in feedctl/db/queries/*.sql."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

import feedctl
from feedctl.db.sql_blocks import _blocks, parse_blocks, query

SQL_KEYWORDS = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "WITH",
    "CREATE",
    "COPY",
    "ANALYZE",
    "TRUNCATE",
    "SET",
)
SHIPPED = sorted(_blocks())
PACKAGE = Path(feedctl.__file__).parent


def test_parse_blocks_splits_names_descriptions_and_sql() -> None:
    text = (
        "-- first --\n"
        "Describes the first query.\n"
        "SELECT 1\n"
        "FROM t\n"
        "\n"
        "-- second_2 --\n"
        "Describes the second.\n"
        "  DELETE FROM t WHERE id = %(id)s  \n"
        "\n\n"
    )
    assert parse_blocks(text) == {
        "first": "SELECT 1\nFROM t",
        "second_2": "DELETE FROM t WHERE id = %(id)s",
    }


def test_parse_blocks_keeps_block_order() -> None:
    text = "".join(f"-- q{i} --\nd\nSELECT {i}\n" for i in (3, 1, 2))
    assert list(parse_blocks(text)) == ["q3", "q1", "q2"]


def test_text_before_the_first_header_is_not_a_block() -> None:
    text = "-- a file comment\n\n-- only --\nd\nSELECT 1\n"
    assert parse_blocks(text) == {"only": "SELECT 1"}


def test_sql_comments_inside_a_block_stay() -> None:
    text = "-- q --\nd\nSELECT 1 -- trailing note\n-- not a header\nFROM t\n"
    assert parse_blocks(text) == {"q": "SELECT 1 -- trailing note\n-- not a header\nFROM t"}


def test_duplicate_names_are_rejected() -> None:
    text = "-- q --\nd\nSELECT 1\n-- other --\nd\nSELECT 2\n-- q --\nd\nSELECT 3\n"
    with pytest.raises(ValueError, match="'q' is defined twice"):
        parse_blocks(text)


def test_empty_text_has_no_blocks() -> None:
    assert parse_blocks("") == {}


def test_shipped_files_have_blocks_and_no_duplicate_headers() -> None:
    folder = resources.files("feedctl.db.queries")
    text = "".join(
        entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    headers = re.findall(r"^-- ([a-z0-9_]+) --$", text, re.MULTILINE)
    assert len(headers) == len(set(headers)) == len(SHIPPED) > 0
    assert "\r" not in text


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_block_is_sql_without_its_description(name: str) -> None:
    sql = query(name)
    assert sql.strip() == sql != ""
    first_word = sql.split(None, 1)[0].upper()
    assert first_word in SQL_KEYWORDS, f"{name} starts with {first_word!r}"
    assert not re.search(r"^-- [a-z0-9_]+ --$", sql, re.MULTILINE)


def test_unknown_query_name_is_key_error() -> None:
    with pytest.raises(KeyError):
        query("no_such_query")


def test_every_shipped_block_is_used_by_feedctl() -> None:
    """A block is used when feedctl's source names it in quotes, as in `query("name")`
    or a dict of names; a block only the tests name is dead code."""
    source = "".join(path.read_text(encoding="utf-8") for path in PACKAGE.rglob("*.py"))
    unused = [name for name in SHIPPED if f'"{name}"' not in source and f"'{name}'" not in source]
    assert unused == [], f"blocks nothing in feedctl/ uses: {unused}"
