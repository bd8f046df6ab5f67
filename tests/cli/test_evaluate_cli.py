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
