"""`rank tune` on seeded engagement: the search beats the default heuristic on the held-out
window and lands nearer the hidden preference; the winner is a heuristic file that loads."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from feedctl.pipelines.ranking.evaluate import EvaluationOptions
from feedctl.pipelines.ranking.tune import TuneOptions, run_tune
from feedctl.rank.evaluation.search import load_space, parse_space
from feedctl.rank.heuristic import Heuristic, load_heuristic
from feedctl.synth import TRUE_PREFERENCE, SeedSpec, seed

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
RETENTION = timedelta(days=30)
SPACE = """
[half_life_hours]
min = 3.0
max = 96.0
log = true

[reactions_weight]
min = 0.0
max = 3.0

[comments_weight]
min = 0.0
max = 6.0

[reputation_weight]
min = 0.0
max = 1.5
"""

Connection = psycopg.Connection[Any]
MigratedDatabase = Callable[[], AbstractContextManager[str]]


@pytest.fixture(scope="module")
def seeded(migrated_database: MigratedDatabase) -> Iterator[Connection]:
    with migrated_database() as url, psycopg.connect(url, autocommit=True) as conn:
        seed(conn, SeedSpec(now=NOW, seed=5))
        yield conn


def distance(heuristic: Heuristic) -> float:
    """How far coefficients are from the hidden preference (half-life on a log scale)."""
    truth = TRUE_PREFERENCE
    return math.sqrt(
        math.log2(heuristic.half_life_hours / truth.half_life_hours) ** 2
        + (heuristic.reputation_weight - truth.reputation_weight) ** 2
    )


def test_the_search_beats_the_default_on_the_held_out_window(
    seeded: Connection, tmp_path: Path
) -> None:
    space_file = tmp_path / "space.toml"
    space_file.write_text(SPACE)
    evaluation = EvaluationOptions(moments=4, sample_users=120, resamples=400, seed=2)
    options = TuneOptions(evaluation, budget=16, metric="ndcg@10")
    default = load_heuristic()
    output = tmp_path / "tuned.toml"
    report = run_tune(seeded, default, load_space(space_file), options, RETENTION, output)
    assert report.trials == 16 and report.training_best > report.training_baseline
    assert report.holdout_queries > 100
    # Confirmed on later moments than the search saw, with the interval above zero.
    assert max(report.training_moments) < min(report.holdout_moments)
    assert report.confirmed and report.holdout_best > report.holdout_baseline
    assert report.holdout_difference_low > 0
    winner = load_heuristic(output)
    assert report.heuristic_file == str(output)
    assert winner.version == report.best["version"] != default.version
    assert winner.coefficients() == {k: report.best[k] for k in winner.coefficients()}
    assert distance(winner) < distance(default)
    assert report.backfill_commands[0] == f"feedctl rank backfill --heuristic {output} --dry-run"


def test_a_search_that_finds_nothing_better_writes_nothing(
    seeded: Connection, tmp_path: Path
) -> None:
    # The only trial is far worse than the truth, which is the baseline here.
    space = parse_space({"half_life_hours": {"values": [5000.0]}}, "test")
    options = TuneOptions(EvaluationOptions(moments=2, sample_users=60, resamples=100), budget=4)
    output = tmp_path / "never.toml"
    report = run_tune(seeded, TRUE_PREFERENCE, space, options, RETENTION, output)
    assert not report.confirmed and report.heuristic_file is None and not output.exists()
    assert report.best["version"].startswith("tuned-") and report.backfill_commands == []
