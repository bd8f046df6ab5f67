"""`rank tune`: search coefficients on a training window, confirm the best on a later
held-out window, and write the winner as a new heuristic file.

The span of moments [since, until] is split in time: the last `holdout` share is held
out. Training moments end a window before the split, so no engagement counted for
training falls in the held-out period. Each trial is the production rank key with other
coefficients, scored on the training candidates (read once); only the baseline and the
best trial are scored on the held-out candidates, paired, with bootstrap intervals.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import psycopg

from feedctl.errors import BadInputError, LockedError
from feedctl.pipelines.ranking.evaluate import (
    EvaluationOptions,
    MetricResult,
    evaluate_frame,
    load_candidates,
    plan_moments,
    span_of,
)
from feedctl.progress import SILENT, Progress
from feedctl.rank.evaluation.compare import mean_metric
from feedctl.rank.evaluation.search import Dimension, heuristic_toml, trials, tuned_version
from feedctl.rank.heuristic import Heuristic


@dataclasses.dataclass(frozen=True)
class TuneOptions:
    evaluation: EvaluationOptions  # moments, users, window, seed: per part (training, held out)
    budget: int = 30
    metric: str = "ndcg@10"
    holdout: float = 0.3  # share of the span held out, at its end
    version: str | None = None  # the winner's version (default: tuned- and a hash)

    def cutoff(self) -> int:
        """The k the metric needs (MRR has none: 10, unused)."""
        name, _, k = self.metric.partition("@")
        if name == "mrr" and not k:
            return 10
        if name not in ("ndcg", "recall", "communities", "authors") or not k.isdigit():
            raise BadInputError(
                f"--metric {self.metric!r} is not one of mrr, ndcg@K, recall@K, "
                "communities@K, authors@K"
            )
        if int(k) < 1:
            raise BadInputError(f"--metric {self.metric!r} needs K >= 1")
        return int(k)

    def validate(self) -> None:
        if self.budget < 1:
            raise BadInputError("--budget must be at least 1")
        if not 0.0 < self.holdout < 1.0:
            raise BadInputError("--holdout must be between 0 and 1 (a share of the span)")
        self.cutoff()
        self.evaluation.validate()


@dataclasses.dataclass(frozen=True)
class TuneReport:
    metric: str
    baseline: dict[str, Any]  # version and coefficients
    best: dict[str, Any]
    trials: int
    training_moments: list[str]
    holdout_moments: list[str]
    training_queries: int
    holdout_queries: int
    training_baseline: float
    training_best: float
    holdout_baseline: float
    holdout_best: float
    holdout_difference: float  # best minus baseline on the held-out window, paired
    holdout_difference_low: float
    holdout_difference_high: float
    confirmed: bool  # the best beats the baseline on the held-out window too
    heuristic_file: str | None  # written only when confirmed
    backfill_commands: list[str]
    stopped: bool = False


def _split(
    conn: psycopg.Connection[Any], options: TuneOptions
) -> tuple[EvaluationOptions, EvaluationOptions]:
    """Training and held-out evaluation options over the two parts of the span."""
    evaluation = options.evaluation
    since, until = span_of(conn, evaluation)
    split = until - (until - since) * options.holdout
    training_until = split - evaluation.window
    if training_until <= since:
        raise BadInputError(
            f"the training part ({since.isoformat()} to {training_until.isoformat()}) is "
            "empty: widen --since/--until, shorten --window or lower --holdout"
        )
    training = dataclasses.replace(evaluation, since=since, until=training_until)
    holdout = dataclasses.replace(evaluation, since=split, until=until)
    return training, holdout


def run_tune(
    conn: psycopg.Connection[Any],
    baseline: Heuristic,
    space: list[Dimension],
    options: TuneOptions,
    retention: timedelta | None,
    output: Path | None = None,
    progress: Progress = SILENT,
    stop: threading.Event | None = None,
) -> TuneReport:
    """Search, confirm and (when confirmed) write `output` (default: VERSION.toml in the
    current directory). Stopped early, it reports the trials done so far, checks nothing
    on the held-out window and writes nothing."""
    options.validate()
    k = options.cutoff()
    training, holdout = _split(conn, options)
    training_moments = plan_moments(conn, training)
    train, _, _ = load_candidates(conn, training_moments, training, retention, SILENT, stop)
    if stop is not None and stop.is_set():
        raise LockedError("stopped while reading the training moments: run it again")
    if train.filter(pl.col("gain") > 0).is_empty():
        raise BadInputError("no sampled user engaged in the training part: widen the span")
    candidates = trials(space, baseline, options.budget, options.evaluation.seed)
    progress.phase("trials", len(candidates))
    baseline_score = mean_metric(train, baseline, options.metric, k)
    best, best_score = baseline, baseline_score
    done = 0
    for trial in candidates:
        if stop is not None and stop.is_set():
            break
        score = mean_metric(train, trial, options.metric, k)
        if score > best_score:
            best, best_score = trial, score
        done += 1
        progress.advance(1)
    winner = dataclasses.replace(best, version=options.version or tuned_version(best))
    stopped = done < len(candidates)
    holdout_moments = plan_moments(conn, holdout)
    confirmation: list[MetricResult] = []
    held_queries = 0
    if not stopped:
        held, sampled, _ = load_candidates(conn, holdout_moments, holdout, retention)
        report = evaluate_frame(
            held,
            [baseline, winner],
            dataclasses.replace(holdout, ks=(k,)),
            moments=holdout_moments,
            users_sampled=sampled,
        ).report
        labels = [h["label"] for h in report.heuristics]
        confirmation = [report.result(label, options.metric) for label in labels]
        held_queries = report.queries
    confirmed = best is not baseline and bool(confirmation) and confirmation[1].difference > 0
    written = None
    if confirmed:
        comment = (
            f"Found by `feedctl rank tune` ({done} trials on {options.metric}): "
            f"{confirmation[1].mean:.4f} against {confirmation[0].mean:.4f} for "
            f"{baseline.version} on the held-out window."
        )
        target = output or Path(f"{winner.version}.toml")
        target.write_text(heuristic_toml(winner, comment), encoding="utf-8")
        written = str(target)
    base_row, best_row = confirmation or (None, None)
    return TuneReport(
        metric=options.metric,
        baseline={"version": baseline.version, **baseline.coefficients()},
        best={"version": winner.version, **winner.coefficients()},
        trials=done,
        training_moments=[m.isoformat() for m in training_moments],
        holdout_moments=[m.isoformat() for m in holdout_moments] if confirmation else [],
        training_queries=_queries(train),
        holdout_queries=held_queries,
        training_baseline=baseline_score,
        training_best=best_score,
        holdout_baseline=base_row.mean if base_row else 0.0,
        holdout_best=best_row.mean if best_row else 0.0,
        holdout_difference=best_row.difference if best_row else 0.0,
        holdout_difference_low=best_row.difference_low if best_row else 0.0,
        holdout_difference_high=best_row.difference_high if best_row else 0.0,
        confirmed=confirmed,
        heuristic_file=written,
        backfill_commands=_backfill_commands(written),
        stopped=stopped,
    )


def _queries(candidates: pl.DataFrame) -> int:
    engaged = candidates.filter(pl.col("gain") > 0)
    return int(engaged.select(["moment", "user_id"]).unique().height)


def _backfill_commands(path: str | None) -> list[str]:
    if path is None:
        return []
    return [
        f"feedctl rank backfill --heuristic {path} --dry-run",
        f"feedctl rank backfill --heuristic {path}",
    ]
