"""`feedctl rank evaluate` through Typer's runner: exit codes, then what it reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import assert_clean_error, invoke

TRUTH = (
    'version = "truth"\nhalf_life_hours = 12.0\nreactions_weight = 0.5\ncomments_weight = 2.0\n'
    "reputation_weight = 0.5\n"
)
STALE = (
    'version = "stale"\nhalf_life_hours = 5000.0\nreactions_weight = 0.0\n'
    "comments_weight = 0.0\nreputation_weight = 1.0\n"
)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    found = {}
    for name, text in (("truth", TRUTH), ("stale", STALE)):
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        found[name] = str(path)
    return found


@pytest.fixture
def seeded(base_args: list[str]) -> list[str]:
    world = ["seed", "--users", "400", "--communities", "6", "--posts", "600", "--days", "10"]
    assert invoke([*base_args, *world]).exit_code == 0
    return base_args


def test_evaluate_prints_metrics_with_intervals(seeded: list[str], files: dict[str, str]) -> None:
    args = ["--heuristic", files["truth"], "--heuristic", files["stale"], "--moments", "3"]
    result = invoke([*seeded, "--json", "rank", "evaluate", *args, "--k", "5,10"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [h["label"] for h in report["heuristics"]] == ["truth", "stale"]
    assert report["ks"] == [5, 10] and len(report["moments"]) == 3 and report["queries"] > 0
    stale = {row["metric"]: row for row in report["metrics"] if row["heuristic"] == "stale"}
    assert set(stale) == {
        "mrr",
        *(f"{m}@{k}" for m in ("ndcg", "recall", "communities", "authors") for k in (5, 10)),
    }
    assert stale["ndcg@10"]["difference"] < 0
    human = invoke([*seeded, "rank", "evaluate", *args])
    assert human.exit_code == 0, human.output
    assert "ndcg@10" in human.stdout and "paired difference" in human.stdout


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--k", "ten"], "--k 'ten' must list whole numbers"),
        (["--k", "0,5"], "must list positive cut-offs"),
        (["--window", "soon"], "duration 'soon' is not understood"),
        (["--since", "yesterday"], "--since 'yesterday' is not a date"),
        (["--since", "2026-02-01", "--until", "2026-01-01"], "--since must be before --until"),
        (["--moments", "0"], "must be at least 1"),
    ],
)
def test_bad_evaluate_input_is_one_line_and_exit_2(
    base_args: list[str], files: dict[str, str], extra: list[str], fragment: str
) -> None:
    result = invoke([*base_args, "rank", "evaluate", "--heuristic", files["truth"], *extra])
    assert_clean_error(result, 2, fragment)


def test_missing_heuristic_file_and_empty_engagement_are_one_line(
    base_args: list[str], files: dict[str, str]
) -> None:
    missing = invoke([*base_args, "rank", "evaluate", "--heuristic", "/nowhere.toml"])
    assert_clean_error(missing, 2, "does not exist")
    empty = invoke([*base_args, "rank", "evaluate", "--heuristic", files["truth"]])
    assert_clean_error(empty, 2, "post_engagements is empty")


def test_tune_writes_the_winner_and_prints_the_backfill(
    seeded: list[str], files: dict[str, str], tmp_path: Path
) -> None:
    space = tmp_path / "space.toml"
    space.write_text("[half_life_hours]\nvalues = [12.0, 5000.0]\n")
    output = tmp_path / "winner.toml"
    args = ["--space", str(space), "--budget", "4", "--baseline", files["stale"]]
    args += ["--output", str(output), "--version-name", "stale-2", "--moments", "3"]
    result = invoke([*seeded, "rank", "tune", *args])
    assert result.exit_code == 0, result.output
    assert f"feedctl rank backfill --heuristic {output} --dry-run" in result.stdout
    assert 'version = "stale-2"' in output.read_text()
    assert "half_life_hours = 12.0" in output.read_text()


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--space", "/nowhere.toml"], "space file /nowhere.toml does not exist"),
        (["--space", "SPACE", "--budget", "0"], "--budget must be at least 1"),
        (["--space", "SPACE", "--metric", "ndcg"], "--metric 'ndcg' is not one of"),
        (["--space", "SPACE", "--holdout", "1.5"], "--holdout must be between 0 and 1"),
    ],
)
def test_bad_tune_input_is_one_line_and_exit_2(
    base_args: list[str], tmp_path: Path, extra: list[str], fragment: str
) -> None:
    space = tmp_path / "space.toml"
    space.write_text("[reputation_weight]\nvalues = [0.5]\n")
    args = [str(space) if word == "SPACE" else word for word in extra]
    assert_clean_error(invoke([*base_args, "rank", "tune", *args]), 2, fragment)
