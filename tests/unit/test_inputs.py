"""Operator inputs (durations, id files) and the exit codes of the error tree."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedctl import errors
from feedctl.cli.id_lists import read_ids
from feedctl.durations import parse_duration
from feedctl.errors import (
    BadInputError,
    ConfigError,
    CursorError,
    FeedctlError,
    HeuristicError,
    LockedError,
    MigrationError,
    NotFoundError,
    ServiceUnavailableError,
)

# --- durations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("0h", timedelta(0)),
        (" 7 d ", timedelta(days=7)),
        ("007d", timedelta(days=7)),
        ("90m", timedelta(hours=1, minutes=30)),
    ],
)
def test_good_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "7", "d", "7D", "7 days", "-7d", "+7d", "1.5h", "7x", "7d7h", "1h30m", "seven d", "7dd"],
)
def test_bad_durations_are_bad_input(text: str) -> None:
    with pytest.raises(BadInputError, match="is not understood"):
        parse_duration(text)


@settings(max_examples=200, deadline=None)
@given(amount=st.integers(min_value=0, max_value=10**6), unit=st.sampled_from("smhdw"))
def test_duration_round_trip(amount: int, unit: str) -> None:
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    assert parse_duration(f"{amount}{unit}").total_seconds() == amount * seconds


@settings(max_examples=200, deadline=None)
# At most 7 digits: larger amounts hit the overflow defect below.
@given(text=st.text(max_size=8))
def test_any_text_parses_or_is_bad_input(text: str) -> None:
    try:
        result = parse_duration(text)
    except BadInputError as exc:
        assert text in exc.message or repr(text) in exc.message
    else:
        assert result >= timedelta(0)


@pytest.mark.parametrize("text", ["1000000000d", "99999999999999999999s", "200000000w"])
def test_huge_duration_is_bad_input(text: str) -> None:
    with pytest.raises(BadInputError):
        parse_duration(text)


# --- id files --------------------------------------------------------------------------


def _ids_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ids.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_ids_with_blanks_and_comments(tmp_path: Path) -> None:
    text = "# users to rebuild\n1\n\n  22  \n333 # trailing comment\n#4\n   \n0005\n"
    assert read_ids(_ids_file(tmp_path, text)) == [1, 22, 333, 5]


def test_empty_file_has_no_ids(tmp_path: Path) -> None:
    assert read_ids(_ids_file(tmp_path, "")) == []


def test_duplicates_and_order_are_kept(tmp_path: Path) -> None:
    assert read_ids(_ids_file(tmp_path, "3\n1\n3\n")) == [3, 1, 3]


def test_crlf_lines_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes(b"1\r\n2\r\n")
    assert read_ids(path) == [1, 2]


@settings(max_examples=100, deadline=None)
@given(ids=st.lists(st.integers(min_value=0, max_value=2**63 - 1), max_size=30))
def test_ids_round_trip(tmp_path_factory: pytest.TempPathFactory, ids: list[int]) -> None:
    path = tmp_path_factory.mktemp("ids") / "ids.txt"
    path.write_text("".join(f"{value}\n" for value in ids), encoding="utf-8")
    assert read_ids(path) == ids


@pytest.mark.parametrize(
    ("text", "line", "bad"),
    [
        ("1\n-2\n", 2, "-2"),
        ("1\n2\n+3\n", 3, "+3"),
        ("abc\n", 1, "abc"),
        ("1 2\n", 1, "1 2"),
        ("1.0\n", 1, "1.0"),
        ("1,2\n", 1, "1,2"),
        ("\n\n0x10\n", 3, "0x10"),
    ],
)
def test_bad_line_is_bad_input_naming_line(tmp_path: Path, text: str, line: int, bad: str) -> None:
    path = _ids_file(tmp_path, text)
    with pytest.raises(BadInputError) as info:
        read_ids(path)
    assert info.value.message.startswith(f"{path}:{line}:")
    assert repr(bad) in info.value.message


def test_missing_file_is_bad_input(tmp_path: Path) -> None:
    missing = tmp_path / "absent.txt"
    with pytest.raises(BadInputError, match="cannot read") as info:
        read_ids(missing)
    assert str(missing) in info.value.message


def test_directory_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="cannot read"):
        read_ids(tmp_path)


def test_binary_file_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "ids.bin"
    path.write_bytes(b"1\n\xff\xfe\x00\n")
    with pytest.raises(BadInputError, match="not a text file"):
        read_ids(path)


@pytest.mark.parametrize("text", ["²\n", "1\n12³\n", "①\n"])
def test_unicode_digit_line_is_bad_input(tmp_path: Path, text: str) -> None:
    with pytest.raises(BadInputError):
        read_ids(_ids_file(tmp_path, text))


# --- errors ----------------------------------------------------------------------------


def test_exit_code_constants() -> None:
    assert (
        errors.EXIT_OK,
        errors.EXIT_FAILED,
        errors.EXIT_USAGE,
        errors.EXIT_PARTIAL,
        errors.EXIT_LOCKED,
    ) == (0, 1, 2, 3, 75)


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (FeedctlError, 1),
        (ConfigError, 2),
        (BadInputError, 2),
        (NotFoundError, 2),
        (CursorError, 2),
        (HeuristicError, 2),
        (ServiceUnavailableError, 1),
        (MigrationError, 1),
        (LockedError, 75),
    ],
)
def test_error_exit_codes(cls: type[FeedctlError], code: int) -> None:
    error = cls("something went wrong")
    assert cls.exit_code == error.exit_code == code
    assert isinstance(error, FeedctlError)
    assert error.message == str(error) == "something went wrong"


@pytest.mark.parametrize("cls", [NotFoundError, CursorError, HeuristicError])
def test_bad_input_family(cls: type[FeedctlError]) -> None:
    assert issubclass(cls, BadInputError)
    with pytest.raises(BadInputError):
        raise cls("x")
