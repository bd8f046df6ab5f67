"""Heuristic files: the default loads, and every malformed file names what is wrong."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedctl.errors import EXIT_USAGE, BadInputError, HeuristicError
from feedctl.rank.heuristic import Heuristic, load_heuristic, parse_heuristic

VALID: dict[str, Any] = {
    "version": "v7",
    "half_life_hours": 12.0,
    "reactions_weight": 1.0,
    "comments_weight": 2,
    "reputation_weight": 0.0,
}
NUMBER_KEYS = ("half_life_hours", "reactions_weight", "comments_weight", "reputation_weight")
VALID_TOML = """\
version = "v7"
half_life_hours = 12.0
reactions_weight = 1.0
comments_weight = 2
reputation_weight = 0.0
"""


def _with(**changes: Any) -> dict[str, Any]:
    return {**VALID, **changes}


def test_heuristic_error_is_bad_input_with_usage_exit_code() -> None:
    assert issubclass(HeuristicError, BadInputError)
    assert HeuristicError.exit_code == EXIT_USAGE


def test_default_heuristic_loads() -> None:
    heuristic = load_heuristic()
    assert heuristic == Heuristic(
        version="default-1",
        half_life_hours=24.0,
        reactions_weight=1.0,
        comments_weight=3.0,
        reputation_weight=0.25,
    )


def test_valid_table_parses_and_ints_become_floats() -> None:
    heuristic = parse_heuristic(VALID, "src")
    assert heuristic == Heuristic("v7", 12.0, 1.0, 2.0, 0.0)
    assert isinstance(heuristic.comments_weight, float)


def test_version_is_stripped() -> None:
    assert parse_heuristic(_with(version="  v8 \n"), "src").version == "v8"


def test_valid_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "h.toml"
    path.write_text(VALID_TOML, encoding="utf-8")
    assert load_heuristic(path) == Heuristic("v7", 12.0, 1.0, 2.0, 0.0)


@settings(max_examples=100, deadline=None)
@given(
    half_life=st.floats(min_value=1e-9, max_value=1e9),
    weights=st.tuples(*[st.floats(min_value=0.0, max_value=1e9)] * 3),
)
def test_any_positive_half_life_and_non_negative_weights_parse(
    half_life: float, weights: tuple[float, float, float]
) -> None:
    raw = _with(
        half_life_hours=half_life,
        reactions_weight=weights[0],
        comments_weight=weights[1],
        reputation_weight=weights[2],
    )
    heuristic = parse_heuristic(raw, "src")
    assert heuristic.half_life_hours == half_life
    assert (
        heuristic.reactions_weight,
        heuristic.comments_weight,
        heuristic.reputation_weight,
    ) == weights


def test_unknown_key_is_named() -> None:
    with pytest.raises(HeuristicError, match="unknown key 'decay'") as info:
        parse_heuristic(_with(decay=1.0), "src")
    assert info.value.message.startswith("src:")


@pytest.mark.parametrize("key", ["version", *NUMBER_KEYS])
def test_missing_key_is_named(key: str) -> None:
    raw = dict(VALID)
    del raw[key]
    with pytest.raises(HeuristicError, match=f"missing key '{key}'"):
        parse_heuristic(raw, "src")


@pytest.mark.parametrize("key", NUMBER_KEYS)
@pytest.mark.parametrize("value", ["1.0", True, False, None, [1.0], {"a": 1}])
def test_wrong_type_is_named(key: str, value: Any) -> None:
    with pytest.raises(HeuristicError, match=f"{key} must be a number") as info:
        parse_heuristic(_with(**{key: value}), "src")
    assert "src" in info.value.message


@pytest.mark.parametrize("value", [0, 0.0, -0.0, -1, -24.5])
def test_non_positive_half_life_is_rejected(value: float) -> None:
    with pytest.raises(HeuristicError, match="half_life_hours must be positive"):
        parse_heuristic(_with(half_life_hours=value), "src")


@pytest.mark.parametrize("key", ["reactions_weight", "comments_weight", "reputation_weight"])
@pytest.mark.parametrize("value", [-1, -0.001, -1e300])
def test_negative_weight_is_named(key: str, value: float) -> None:
    with pytest.raises(HeuristicError, match=f"{key} must not be negative"):
        parse_heuristic(_with(**{key: value}), "src")


@pytest.mark.parametrize("key", NUMBER_KEYS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_number_is_named(key: str, value: float) -> None:
    with pytest.raises(HeuristicError, match=f"{key} must be finite"):
        parse_heuristic(_with(**{key: value}), "src")


@pytest.mark.parametrize("value", ["", "   ", 7, None, True, ["v"]])
def test_empty_or_non_string_version_is_named(value: Any) -> None:
    with pytest.raises(HeuristicError, match="version must be a non-empty string"):
        parse_heuristic(_with(version=value), "src")


@pytest.mark.parametrize("key", NUMBER_KEYS)
@pytest.mark.parametrize("literal", ["nan", "inf", "-inf", "+nan"])
def test_toml_nan_and_inf_in_file_are_named(tmp_path: Path, key: str, literal: str) -> None:
    path = tmp_path / "h.toml"
    text = "\n".join(
        f"{name} = {literal}" if name == key else line
        for line in VALID_TOML.splitlines()
        for name in [line.split(" = ")[0]]
    )
    path.write_text(text, encoding="utf-8")
    with pytest.raises(HeuristicError, match=f"{key} must be finite") as info:
        load_heuristic(path)
    assert str(path) in info.value.message


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('half_life_hours = "24"', "half_life_hours"),
        ("reactions_weight = true", "reactions_weight"),
        ("comments_weight = -3", "comments_weight"),
        ("reputation_weight = 1979-05-27", "reputation_weight"),
    ],
)
def test_bad_value_in_file_is_named(tmp_path: Path, extra: str, key: str) -> None:
    path = tmp_path / "h.toml"
    lines = [line for line in VALID_TOML.splitlines() if not line.startswith(key)]
    path.write_text("\n".join([*lines, extra]), encoding="utf-8")
    with pytest.raises(HeuristicError, match=key) as info:
        load_heuristic(path)
    assert info.value.message.startswith(str(path))


def test_unknown_table_in_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "h.toml"
    path.write_text(VALID_TOML + "[extras]\nboost = 2\n", encoding="utf-8")
    with pytest.raises(HeuristicError, match="unknown key 'extras'"):
        load_heuristic(path)


def test_missing_key_in_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "h.toml"
    path.write_text(VALID_TOML.replace('version = "v7"\n', ""), encoding="utf-8")
    with pytest.raises(HeuristicError, match="missing key 'version'"):
        load_heuristic(path)


def test_empty_version_in_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "h.toml"
    path.write_text(VALID_TOML.replace('"v7"', '""'), encoding="utf-8")
    with pytest.raises(HeuristicError, match="version must be a non-empty string"):
        load_heuristic(path)


@pytest.mark.parametrize("text", ["version = ", "half_life_hours = 1\nhalf_life_hours = 2", "[x"])
def test_invalid_toml_is_heuristic_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "h.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(HeuristicError, match="is not valid TOML") as info:
        load_heuristic(path)
    assert str(path) in info.value.message


def test_missing_file_is_heuristic_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(HeuristicError, match="does not exist") as info:
        load_heuristic(path)
    assert str(path) in info.value.message


def test_directory_or_binary_file_is_heuristic_error(tmp_path: Path) -> None:
    with pytest.raises(HeuristicError, match="cannot be read"):
        load_heuristic(tmp_path)
    binary = tmp_path / "h.toml"
    binary.write_bytes(b"\xff\xfe\x00version")
    with pytest.raises(HeuristicError, match="cannot be read"):
        load_heuristic(binary)
