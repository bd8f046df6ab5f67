"""`rank evaluate`: rebuild sampled users' feeds at past moments from PostgreSQL and score
each heuristic's ranking against the engagement that followed.

Features are as of each moment: reactions and comments are counted from post_engagements
before it, never from the posts' counters of today. Memory is bounded by the sample
(moments x sampled users x the posts their feeds held then), not by the data.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import psycopg

from feedctl.db.sql_blocks import query
from feedctl.errors import BadInputError, LockedError
from feedctl.progress import SILENT, Progress
from feedctl.rank.evaluation.compare import Comparison, compare
from feedctl.rank.evaluation.metrics import CANDIDATE_SCHEMA
from feedctl.rank.heuristic import Heuristic

DEFAULT_SPAN = timedelta(days=14)
_FAR_PAST = datetime(1970, 1, 1).astimezone()


@dataclasses.dataclass(frozen=True)
class EvaluationOptions:
    since: datetime | None = None  # first moment at or after this (default: until - 14 days)
    until: datetime | None = (
        None  # last moment at or before this (default: last engagement - window)
    )
    moments: int = 8
    sample_users: int = 200  # per moment
    ks: tuple[int, ...] = (10, 20, 50)
    window: timedelta = timedelta(hours=24)  # engagement counted after each moment
    seed: int = 0
    resamples: int = 1000

    def validate(self) -> None:
        if self.moments < 1 or self.sample_users < 1 or self.resamples < 1:
            raise BadInputError("--moments, --sample-users and --resamples must be at least 1")
        if not self.ks or any(k < 1 for k in self.ks):
            raise BadInputError("--k must list positive cut-offs, e.g. 10,20,50")
        if self.window <= timedelta(0):
            raise BadInputError("--window must be positive")
        if self.since and self.until and self.since >= self.until:
            raise BadInputError("--since must be before --until")


@dataclasses.dataclass(frozen=True)
class MetricResult:
    heuristic: str
    metric: str
    mean: float
    low: float
    high: float
    difference: float  # minus the first heuristic's mean, paired
    difference_low: float
    difference_high: float


@dataclasses.dataclass(frozen=True)
class EvaluationReport:
    heuristics: list[dict[str, Any]]  # label, version, coefficients
    ks: list[int]
    moments: list[str]
    window_hours: float
    users_sampled: int
    candidates: int
    queries: int  # (moment, user) pairs with engagement in their window
    resamples: int
    metrics: list[MetricResult]
    stopped: bool = False  # stopped early: only the moments listed were read

    def result(self, heuristic: str, metric: str) -> MetricResult:
        for row in self.metrics:
            if row.heuristic == heuristic and row.metric == metric:
                return row
        raise KeyError((heuristic, metric))


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The report, and what the HTML report draws from."""

    report: EvaluationReport
    candidates: pl.DataFrame
    heuristics: list[Heuristic]
    labels: list[str]
    comparison: Comparison


def labels_of(heuristics: Sequence[Heuristic]) -> list[str]:
    """Each heuristic's version, made unique (`v`, `v#2`, ...) when versions repeat."""
    labels: list[str] = []
    for heuristic in heuristics:
        label, n = heuristic.version, 1
        while label in labels:
            n += 1
            label = f"{heuristic.version}#{n}"
        labels.append(label)
    return labels


def span_of(conn: psycopg.Connection[Any], options: EvaluationOptions) -> tuple[datetime, datetime]:
    """[since, until] of the moments: the options', or defaults from the engagement data."""
    first, last = conn.execute(query("evaluation_span")).fetchone() or (None, None)
    if first is None or last is None:
        raise BadInputError("post_engagements is empty: there is nothing to evaluate against")
    until = options.until or last - options.window
    since = options.since or max(first, until - DEFAULT_SPAN)
    if since >= until:
        raise BadInputError(
            f"no room for moments between {since.isoformat()} and {until.isoformat()}: "
            "engagement data must span more than the window"
        )
    return since, until


def plan_moments(conn: psycopg.Connection[Any], options: EvaluationOptions) -> list[datetime]:
    """`moments` evenly spaced moments in [since, until] (the middles of equal slices)."""
    since, until = span_of(conn, options)
    step = (until - since) / options.moments
    return [since + step * (index + 0.5) for index in range(options.moments)]


def load_candidates(
    conn: psycopg.Connection[Any],
    moments: Sequence[datetime],
    options: EvaluationOptions,
    retention: timedelta | None,
    progress: Progress = SILENT,
    stop: threading.Event | None = None,
) -> tuple[pl.DataFrame, int, list[datetime]]:
    """The candidate frame (metrics.CANDIDATE_SCHEMA) of the moments read, the number of
    users sampled and the moments read (all of them unless `stop` was set): one moment at
    a time, four queries each."""
    progress.phase("reading moments", len(moments))
    frames: list[pl.DataFrame] = []
    sampled = 0
    read: list[datetime] = []
    for moment in moments:
        if stop is not None and stop.is_set():
            break
        frame = _moment_candidates(conn, moment, options, retention)
        if frame is not None:
            sampled += frame["user_id"].n_unique()
            frames.append(frame)
        read.append(moment)
        progress.advance(1)
    if not frames:
        return CANDIDATE_SCHEMA.to_frame(), 0, read
    return pl.concat(frames), sampled, read


def _moment_candidates(
    conn: psycopg.Connection[Any],
    moment: datetime,
    options: EvaluationOptions,
    retention: timedelta | None,
) -> pl.DataFrame | None:
    window_end = moment + options.window
    users = [
        row[0]
        for row in conn.execute(
            query("evaluation_sample_users"),
            {
                "moment": moment,
                "window_end": window_end,
                "seed": options.seed,
                "users": options.sample_users,
            },
        ).fetchall()
    ]
    if not users:
        return None
    oldest = moment - retention if retention else _FAR_PAST
    rows = conn.execute(
        query("evaluation_candidates"), {"users": users, "moment": moment, "oldest": oldest}
    ).fetchall()
    columns = ["user_id", "post_id", "community_id", "author_id", "created_at", "reputation"]
    candidates = pl.DataFrame(
        rows, schema={name: CANDIDATE_SCHEMA[name] for name in columns}, orient="row"
    )
    if candidates.is_empty():
        return None
    posts = candidates["post_id"].unique().to_list()
    counts = pl.DataFrame(
        conn.execute(
            query("evaluation_counts_before"), {"posts": posts, "moment": moment}
        ).fetchall(),
        schema={"post_id": pl.Int64, "reactions_count": pl.Int64, "comments_count": pl.Int64},
        orient="row",
    )
    gains = pl.DataFrame(
        conn.execute(
            query("evaluation_engagement_after"),
            {"users": users, "moment": moment, "window_end": window_end},
        ).fetchall(),
        schema={"user_id": pl.Int64, "post_id": pl.Int64, "gain": pl.Int64},
        orient="row",
    )
    return (
        candidates.join(counts, on="post_id", how="left")
        .join(gains, on=["user_id", "post_id"], how="left")
        .with_columns(
            pl.col("reactions_count", "comments_count", "gain").fill_null(0),
            moment=pl.lit(moment).cast(CANDIDATE_SCHEMA["moment"]),
        )
        .select(CANDIDATE_SCHEMA.names())
    )


def evaluate_frame(
    candidates: pl.DataFrame,
    heuristics: Sequence[Heuristic],
    options: EvaluationOptions,
    *,
    moments: Sequence[datetime],
    users_sampled: int,
    stopped: bool = False,
) -> Evaluation:
    """Compare the heuristics on an already loaded candidate frame."""
    if candidates.filter(pl.col("gain") > 0).is_empty():
        raise BadInputError(
            "no sampled user engaged with their feed in the window after any moment: "
            "widen --since/--until, --window or --sample-users"
        )
    comparison = compare(
        candidates, heuristics, options.ks, resamples=options.resamples, seed=options.seed
    )
    labels = labels_of(heuristics)
    rows: list[MetricResult] = []
    for index, label in enumerate(labels):
        for position, metric in enumerate(comparison.metrics):
            mean = comparison.bootstrapped.means[index][position]
            difference = comparison.bootstrapped.differences[index][position]
            rows.append(
                MetricResult(
                    label,
                    metric,
                    mean.mean,
                    mean.low,
                    mean.high,
                    difference.mean,
                    difference.low,
                    difference.high,
                )
            )
    report = EvaluationReport(
        heuristics=[
            {"label": label, "version": h.version, "coefficients": h.coefficients()}
            for label, h in zip(labels, heuristics, strict=True)
        ],
        ks=list(options.ks),
        moments=[moment.isoformat() for moment in moments],
        window_hours=options.window.total_seconds() / 3600,
        users_sampled=users_sampled,
        candidates=candidates.height,
        queries=comparison.queries,
        resamples=options.resamples,
        metrics=rows,
        stopped=stopped,
    )
    return Evaluation(report, candidates, list(heuristics), labels, comparison)


def run_evaluation(
    conn: psycopg.Connection[Any],
    heuristics: Sequence[Heuristic],
    options: EvaluationOptions,
    retention: timedelta | None,
    progress: Progress = SILENT,
    stop: threading.Event | None = None,
) -> Evaluation:
    """Sample moments and users, read their candidates, and compare the heuristics. When
    `stop` is set, the moments read so far are evaluated and the report says `stopped`."""
    if not heuristics:
        raise BadInputError("give at least one --heuristic")
    options.validate()
    moments = plan_moments(conn, options)
    candidates, sampled, read = load_candidates(conn, moments, options, retention, progress, stop)
    if not read:
        raise LockedError("stopped before any moment was read: run it again")
    return evaluate_frame(
        candidates,
        heuristics,
        options,
        moments=read,
        users_sampled=sampled,
        stopped=len(read) < len(moments),
    )
