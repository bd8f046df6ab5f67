"""Search spaces for `rank tune`: parsing, the grid, seeded draws, and clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from feedctl.errors import BadInputError
from feedctl.rank.evaluation.search import heuristic_toml, parse_space, trials, tuned_version
from feedctl.rank.heuristic import load_heuristic, parse_heuristic


def test_a_small_grid_is_searched_whole_and_draws_are_seeded() -> None:
    grid = parse_space(
        {"half_life_hours": {"values": [6, 12]}, "comments_weight": {"values": [1, 2]}}, "t"
    )
    tried = trials(grid, load_heuristic(), budget=10, seed=0)
    assert sorted((t.half_life_hours, t.comments_weight) for t in tried) == [
        (6.0, 1.0),
        (6.0, 2.0),
        (12.0, 1.0),
        (12.0, 2.0),
    ]
    ranges = parse_space({"reputation_weight": {"min": 0, "max": 2}}, "t")
    first = trials(ranges, load_heuristic(), budget=5, seed=3)
    assert first == trials(ranges, load_heuristic(), budget=5, seed=3) and len(first) == 5
    assert all(0 <= t.reputation_weight <= 2 and t.half_life_hours == 24.0 for t in first)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({}, "names no coefficient"),
        ({"speed": {"values": [1]}}, "unknown coefficient 'speed'"),
        ({"half_life_hours": {"min": 0, "max": 5, "log": True}}, "needs min > 0"),
        ({"comments_weight": {"min": 3, "max": 1}}, "must not exceed"),
        ({"comments_weight": {"values": []}}, "non-empty list"),
        ({"comments_weight": {"values": [-1]}}, "must not be negative"),
    ],
)
def test_bad_spaces_name_the_key(raw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(BadInputError, match=fragment):
        trials(parse_space(raw, "space.toml"), load_heuristic(), budget=3, seed=0)


def test_the_written_file_reads_back_and_the_version_follows_the_coefficients(
    tmp_path: Any,
) -> None:
    tried = trials(parse_space({"comments_weight": {"values": [5.5]}}, "t"), load_heuristic(), 1, 0)
    winner = tried[0]
    named = parse_heuristic({**winner.coefficients(), "version": tuned_version(winner)}, "t")
    path = tmp_path / "w.toml"
    path.write_text(heuristic_toml(named, "two\nlines"))
    assert load_heuristic(path) == named
    assert tuned_version(named) == tuned_version(winner) != tuned_version(load_heuristic())
