"""`rank evaluate` against real PostgreSQL: on seeded engagement the hidden preference wins,
identical heuristics tie, and features are counted as of each moment (no leakage)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import psycopg
import pytest

from feedctl.errors import BadInputError
from feedctl.pipelines.ranking.evaluate import (
    EvaluationOptions,
    load_candidates,
    run_evaluation,
)
from feedctl.rank.heuristic import Heuristic, load_heuristic
from feedctl.synth import TRUE_PREFERENCE, SeedSpec, seed

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
RETENTION = timedelta(days=30)
# Clearly wrong: no freshness to speak of and no engagement; reputation alone decides.
WRONG = Heuristic(
    "wrong",
    half_life_hours=10_000.0,
    reactions_weight=0.0,
    comments_weight=0.0,
    reputation_weight=1.0,
)
OPTIONS = EvaluationOptions(moments=4, sample_users=120, resamples=400, seed=1)

Connection = psycopg.Connection[Any]
MigratedDatabase = Callable[[], AbstractContextManager[str]]


@pytest.fixture(scope="module")
def seeded(migrated_database: MigratedDatabase) -> Iterator[Connection]:
    with migrated_database() as url, psycopg.connect(url, autocommit=True) as conn:
        seed(conn, SeedSpec(now=NOW))
        yield conn


def test_the_true_coefficients_beat_a_clearly_wrong_heuristic(seeded: Connection) -> None:
    report = run_evaluation(
        seeded, [TRUE_PREFERENCE, WRONG, load_heuristic()], OPTIONS, RETENTION
    ).report
    assert report.queries > 200
    # Memory follows the sample: at most sample_users users per moment are read.
    assert report.users_sampled <= OPTIONS.moments * OPTIONS.sample_users
    for metric in ("ndcg@10", "recall@20", "mrr"):
        wrong = report.result("wrong", metric)
        assert wrong.difference_high < 0, (metric, wrong)  # the interval excludes zero
        assert wrong.low <= wrong.mean <= wrong.high
    # The default heuristic (24 h half-life, reputation 0.25) is worse than the truth too.
    assert report.result("default-1", "ndcg@10").difference < 0


def test_two_identical_heuristics_tie(seeded: Connection) -> None:
    twin = Heuristic("twin", **load_heuristic().coefficients())
    report = run_evaluation(seeded, [load_heuristic(), twin], OPTIONS, RETENTION).report
    for row in report.metrics:
        if row.heuristic == "twin":
            first = report.result("default-1", row.metric)
            assert (row.mean, row.low, row.high) == (first.mean, first.low, first.high)
            assert (row.difference, row.difference_low, row.difference_high) == (0.0, 0.0, 0.0)


def test_the_same_options_give_the_same_report(seeded: Connection) -> None:
    one = run_evaluation(seeded, [TRUE_PREFERENCE, WRONG], OPTIONS, RETENTION).report
    two = run_evaluation(seeded, [TRUE_PREFERENCE, WRONG], OPTIONS, RETENTION).report
    assert one == two


# ------------------------------------------------------------------------------ leakage

MOMENT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
BY_REACTIONS = Heuristic("by-reactions", 1e6, 1.0, 0.0, 0.0)


def leaky_world(conn: Connection) -> None:
    """One community of 20 members; ten posts of the same age. Before MOMENT the "old
    favourites" (posts 1-5) get 10 reactions each and posts 6-10 none; in the day after it
    every member reacts to posts 6-10 only. Today's counters hold the totals, so posts
    6-10 lead them (20 reactions against 10)."""
    created = MOMENT - timedelta(hours=10)
    conn.execute("INSERT INTO users (id, reputation) SELECT g, 0 FROM generate_series(1, 20) g")
    conn.execute("INSERT INTO communities (id, name) VALUES (1, 'one')")
    conn.execute(
        "INSERT INTO memberships (community_id, user_id, joined_at)"
        " SELECT 1, g, %s FROM generate_series(1, 20) g",
        (MOMENT - timedelta(days=30),),
    )
    conn.execute(
        "INSERT INTO posts (id, community_id, author_id, created_at, reactions_count)"
        " SELECT g, 1, 1, %s, CASE WHEN g <= 5 THEN 10 ELSE 20 END FROM generate_series(1, 10) g",
        (created,),
    )
    conn.execute(  # before the moment: users 1-10 react to each old favourite
        "INSERT INTO post_engagements (user_id, post_id, kind, created_at)"
        " SELECT u, p, 'reaction', %s FROM generate_series(1, 10) u, generate_series(1, 5) p",
        (MOMENT - timedelta(hours=5),),
    )
    conn.execute(  # after it: every member reacts to posts 6-10
        "INSERT INTO post_engagements (user_id, post_id, kind, created_at)"
        " SELECT u, p, 'reaction', %s FROM generate_series(1, 20) u, generate_series(6, 10) p",
        (MOMENT + timedelta(hours=2),),
    )


def test_features_are_counted_before_the_moment(database_url: str) -> None:
    options = EvaluationOptions(moments=1, sample_users=50)
    with psycopg.connect(database_url, autocommit=True) as conn:
        leaky_world(conn)
        frame, sampled, _ = load_candidates(conn, [MOMENT], options, RETENTION)
    assert sampled == 20 and frame.height == 200
    counts = dict(frame.group_by("post_id").agg(pl.col("reactions_count").max()).iter_rows())
    assert counts == {p: 10 if p <= 5 else 0 for p in range(1, 11)}


def test_a_ranking_by_reactions_is_scored_as_of_the_moment(database_url: str) -> None:
    """Had today's counters been used, posts 6-10 would lead and every metric would be
    perfect; as of the moment the favourites lead, and the engaged posts sit at 6-10."""
    options = EvaluationOptions(
        since=MOMENT - timedelta(minutes=1),
        until=MOMENT + timedelta(minutes=1),
        moments=1,
        sample_users=50,
        ks=(5, 10),
        resamples=50,
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        leaky_world(conn)
        report = run_evaluation(conn, [BY_REACTIONS], options, RETENTION).report
    assert report.moments == [MOMENT.isoformat()]
    assert report.queries == 20
    assert report.result("by-reactions", "ndcg@5").mean == 0.0
    assert report.result("by-reactions", "recall@10").mean == 1.0
    assert report.result("by-reactions", "mrr").mean == pytest.approx(1 / 6)


def test_no_engagement_is_a_clear_error(database_url: str) -> None:
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        pytest.raises(BadInputError, match="post_engagements is empty"),
    ):
        run_evaluation(conn, [BY_REACTIONS], OPTIONS, RETENTION)
