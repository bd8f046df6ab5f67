"""`feedctl rank` and `feedctl rank backfill` through Typer's runner: exit codes first,
then the stored state; every user mistake is one line on stderr."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from cli_runner import assert_clean_error, invoke

from feedctl.config import Settings
from feedctl.context import open_context
from feedctl.pipelines.ranking.nightly import run_rank
from feedctl.synth import SeedSpec, seed

V2 = (
    'version = "v2"\nhalf_life_hours = 6.0\nreactions_weight = 2.0\ncomments_weight = 0.5\n'
    "reputation_weight = 1.0\n"
)


@pytest.fixture
def scored(settings: Settings) -> Settings:
    """Posts scored under the default heuristic and every member's feed entries written."""
    spec = SeedSpec(
        users=80, communities=3, posts=60, seed=9, now=datetime(2026, 11, 1, tzinfo=UTC)
    )
    with open_context(settings) as ctx:
        seed(ctx.conn, spec)
        run_rank(ctx, include_unscored=True)
        ctx.conn.execute(
            "INSERT INTO feed_entry (user_id, post_id, community_id, author_id, score, "
            "created_at) SELECT m.user_id, p.id, p.community_id, p.author_id, ps.score, "
            "p.created_at FROM posts p JOIN post_score ps ON ps.post_id = p.id "
            "JOIN memberships m ON m.community_id = p.community_id"
        )
    return settings


@pytest.fixture
def v2_file(tmp_path: Path) -> str:
    path = tmp_path / "v2.toml"
    path.write_text(V2)
    return str(path)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ([], "give --heuristic FILE"),
        (["--shard", "2"], "--shard must look like i/N"),
        (["--shard", "3/3"], "shard index must be between 0 and 2"),
        (["--shard", "0/0"], "shard count must be between 1"),
        (["--heuristic", "H", "--rate-limit", "0"], "--rate-limit must be a positive"),
        (["--heuristic", "H", "--rate-limit", "nan"], "--rate-limit must be a positive"),
        (["--heuristic", "H", "--chunk-rows", "0"], "--chunk-rows must be at least 1"),
        (["--heuristic", "H", "--method", "fast"], "--method must be one of auto, swap"),
        (["--dry-run", "--heuristic", "H", "--method", "x"], "--method must be one of auto"),
        (["--resume", "--replace"], "--resume and --replace exclude each other"),
        (["--dry-run"], "--dry-run needs --heuristic FILE"),
        (["--dry-run", "--heuristic", "H", "--top", "0"], "--top must be at least 1"),
        (["--resume"], "no unfinished backfill to resume"),
        (["--heuristic", "/nowhere.toml"], "does not exist"),
    ],
)
def test_bad_backfill_input_is_one_line_and_exit_2(
    base_args: list[str], v2_file: str, extra: list[str], fragment: str
) -> None:
    args = [v2_file if word == "H" else word for word in extra]
    assert_clean_error(invoke([*base_args, "rank", "backfill", *args]), 2, fragment)


def test_dry_run_then_sharded_backfill_then_nightly(
    base_args: list[str], scored: Settings, v2_file: str
) -> None:
    with psycopg.connect(scored.database_url or "") as conn:
        entries = conn.execute("SELECT count(*) FROM feed_entry").fetchone()[0]
    preview = invoke(
        [*base_args, "--json", "rank", "backfill", "--heuristic", v2_file, "--dry-run"]
    )
    assert preview.exit_code == 0, preview.output
    counts = json.loads(preview.stdout)
    assert counts["dry_run"] is True
    assert counts["entries"] == counts["entries_changed"] == entries > 0
    assert 0 < counts["top_overlap_mean"] <= 1
    assert counts["method"] == "swap"  # every score changes: auto would swap
    small = invoke(
        [*base_args, "--json", "rank", "backfill", "--heuristic", v2_file, "--dry-run",
         "--method", "in-place", "--sample-feeds", "0"]
    )  # fmt: skip
    assert small.exit_code == 0, small.output
    assert json.loads(small.stdout)["method"] == "in_place"

    first = invoke(
        [*base_args, "--json", "rank", "backfill", "--heuristic", v2_file, "--shard", "0/2"]
    )
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["shard_done"] is True and report["backfill_done"] is False
    assert report["method"] == "swap" and report["partitions_swapped"] == 8  # of 16
    assert "1 of 2 shards" in first.stderr

    assert_clean_error(invoke([*base_args, "rank"]), 2, "stored scores follow heuristic 'v2'")
    second = invoke(
        [*base_args, "--json", "rank", "backfill", "--heuristic", v2_file, "--shard", "1/2",
         "--rate-limit", "1000000"]
    )  # fmt: skip
    assert second.exit_code == 0, second.output
    done = json.loads(second.stdout)
    assert done["backfill_done"] is True
    assert report["entries_updated"] + done["entries_updated"] == entries
    nightly = invoke([*base_args, "--json", "rank", "--heuristic", v2_file])
    assert nightly.exit_code == 0, nightly.output
    assert json.loads(nightly.stdout)["posts_rescored"] == 0
    with psycopg.connect(scored.database_url or "") as conn:
        versions = conn.execute("SELECT DISTINCT heuristic_version FROM post_score").fetchall()
        stale = conn.execute(
            "SELECT count(*) FROM feed_entry fe JOIN post_score ps USING (post_id) "
            "WHERE fe.score <> ps.score"
        ).fetchone()
    assert versions == [("v2",)] and stale == (0,)


def test_both_commands_exit_75_while_the_other_holds_the_lock(
    base_args: list[str], scored: Settings, v2_file: str
) -> None:
    with psycopg.connect(scored.database_url or "", autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext('feedctl.rank'))")
        assert_clean_error(invoke([*base_args, "rank"]), 75, "feedctl.rank")
        result = invoke([*base_args, "rank", "backfill", "--heuristic", v2_file])
        assert_clean_error(result, 75, "nightly `feedctl rank` run is running")
    with psycopg.connect(scored.database_url or "", autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock_shared(hashtext('feedctl.rank'))")
        assert_clean_error(invoke([*base_args, "rank"]), 75, "backfill shard")
