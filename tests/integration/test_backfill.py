"""`rank backfill --method in-place` against real PostgreSQL and Redis: every score, feed
entry and cached feed ends under the new heuristic, shards are disjoint, stops resume, dry
runs write nothing. (The swap method: test_backfill_swap.py.)"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest

from feedctl.context import Context, open_context
from feedctl.errors import BadInputError, FeedctlError, HeuristicError, LockedError
from feedctl.pipelines.ranking import versions as heuristic_versions
from feedctl.pipelines.ranking.backfill.preview import PreviewOptions, preview_backfill
from feedctl.pipelines.ranking.backfill.run import BackfillOptions, run_backfill
from feedctl.pipelines.ranking.backfill.shards import Shard
from feedctl.pipelines.ranking.nightly import run_rank
from feedctl.rank.heuristic import Heuristic, load_heuristic

from expected import default_coefficients, expected_user_feeds, live_post_scores
from progress_recorder import RecordingProgress
from rank_world import (
    V2,
    assert_same_feed,
    assert_world,
    build_world,
    cached,
    stored_feeds,
    user_ids,
    write_heuristic,
)

pytestmark = pytest.mark.redis_cluster_too  # each test on one server and on a cluster


@pytest.fixture
def world(ctx: Context) -> Context:
    build_world(ctx)
    assert_world(ctx)  # the starting point is right before anything is backfilled
    return ctx


@pytest.fixture
def v2(tmp_path: Path) -> Heuristic:
    return load_heuristic(write_heuristic(tmp_path, V2))


def entry_count(ctx: Context) -> int:
    row = ctx.conn.execute("SELECT count(*) FROM feed_entry").fetchone()
    return int(row[0]) if row else 0


def test_backfill_moves_every_score_entry_and_cached_feed(world: Context, v2: Heuristic) -> None:
    live = live_post_scores(world.conn)
    report = run_backfill(world, v2, BackfillOptions(method="in-place", chunk_rows=700))
    assert report.backfill_done and report.shard_done and not report.stopped
    assert report.posts_rescored == len(live)
    assert report.entries_updated == entry_count(world) > 2000
    assert report.chunks > 3  # several transactions, not one
    assert report.feeds_rewritten == len(user_ids(world)) + 5  # every cached feed
    assert report.redis_failures == 0
    assert_world(world, V2)
    current = heuristic_versions.current(world.conn)
    assert current is not None and current.heuristic == v2
    again = run_rank(dataclasses.replace(world, heuristic=v2))
    assert again.posts_rescored == 0  # nothing left for the nightly run


def test_nightly_rank_refuses_the_old_version_after_a_backfill(
    world: Context, v2: Heuristic
) -> None:
    run_backfill(world, v2, BackfillOptions(method="in-place"))
    with pytest.raises(BadInputError, match="stored scores follow heuristic 'v2'"):
        run_rank(world)  # the default heuristic: it would rescore everything back
    edited = dataclasses.replace(v2, comments_weight=9.0)
    with pytest.raises(HeuristicError, match="'v2' was used before with other coefficients"):
        run_rank(dataclasses.replace(world, heuristic=edited))
    assert_world(world, V2)


def test_shards_split_users_and_finish_together(world: Context, v2: Heuristic) -> None:
    before = stored_feeds(world)
    first = run_backfill(
        world, v2, BackfillOptions(method="in-place", shard=Shard(0, 2), chunk_rows=500)
    )
    assert first.shard_done and not first.backfill_done
    assert first.shards_done == 1
    expected = expected_user_feeds(world.conn, V2)
    halfway = stored_feeds(world)
    for user_id, feed in halfway.items():
        if user_id % 2 == 0:
            assert_same_feed(feed, expected[user_id])
        else:
            assert feed == before[user_id]  # shard 1's users are untouched so far
    with pytest.raises(BadInputError, match="split into 2 shard"):
        run_backfill(world, v2, BackfillOptions(method="in-place", shard=Shard(1, 3)))
    second = run_backfill(
        world, v2, BackfillOptions(method="in-place", shard=Shard(1, 2), chunk_rows=500)
    )
    assert second.backfill_done and second.shards_done == 2
    assert second.posts_rescored == 0  # post_score was done once, by the first shard
    assert first.entries_updated + second.entries_updated == entry_count(world)
    assert_world(world, V2)


def stop_after(phase: str, chunks: int, stop: threading.Event) -> RecordingProgress:
    def after_chunk(progress: RecordingProgress) -> None:
        if progress.current == phase and progress.advances[phase] >= chunks:
            stop.set()

    return RecordingProgress(after_chunk)


def test_stopped_backfill_resumes_and_insists_on_resume(world: Context, v2: Heuristic) -> None:
    stop = threading.Event()
    options = BackfillOptions(method="in-place", chunk_rows=500)
    report = run_backfill(world, v2, options, stop=stop, progress=stop_after("users", 2, stop))
    assert report.stopped and not report.shard_done and report.entries_updated > 0
    with pytest.raises(BadInputError, match="already started: pass --resume"):
        run_backfill(world, v2, options)
    other = load_heuristic(write_heuristic(world.settings.home.parent, {**V2, "version": "v3"}))
    with pytest.raises(BadInputError, match="unfinished: finish it with --resume"):
        run_backfill(world, other, options)
    with pytest.raises(BadInputError, match="not the given 'v3'"):
        run_backfill(world, other, dataclasses.replace(options, resume=True))
    resumed = run_backfill(world, None, dataclasses.replace(options, resume=True))
    assert resumed.resumed and resumed.backfill_done and resumed.posts_rescored == 0
    assert report.entries_updated + resumed.entries_updated == entry_count(world)
    assert_world(world, V2)
    with pytest.raises(BadInputError, match="no unfinished backfill to resume"):
        run_backfill(world, None, dataclasses.replace(options, resume=True))


def test_replace_abandons_an_unfinished_backfill(world: Context, v2: Heuristic) -> None:
    stop = threading.Event()
    run_backfill(world, v2, BackfillOptions(method="in-place", chunk_rows=500), stop=stop,
                 progress=stop_after("posts", 1, stop))  # fmt: skip
    v3 = {**V2, "version": "v3", "half_life_hours": 48.0}
    heuristic = load_heuristic(write_heuristic(world.settings.home.parent, v3))
    report = run_backfill(world, heuristic, BackfillOptions(method="in-place", replace=True))
    assert report.backfill_done
    states = world.conn.execute("SELECT state FROM rank_backfill ORDER BY id").fetchall()
    assert states == [("replaced",), ("done",)]
    assert_world(world, v3)


def test_nightly_rank_waits_for_the_post_phase_then_keeps_entries_right(
    world: Context, v2: Heuristic
) -> None:
    """A nightly run between a backfill's chunks: refused while post_score is half done,
    allowed once it is done; the resumed backfill still ends exactly right."""
    stop = threading.Event()
    options = BackfillOptions(method="in-place", chunk_rows=60)
    run_backfill(world, v2, options, stop=stop, progress=stop_after("posts", 1, stop))
    nightly = dataclasses.replace(world, heuristic=v2)
    with pytest.raises(FeedctlError, match="has not finished rescoring posts"):
        run_rank(nightly)
    stop.clear()
    run_backfill(world, None, dataclasses.replace(options, resume=True), stop=stop,
                 progress=stop_after("users", 1, stop))  # fmt: skip
    world.conn.execute("UPDATE posts SET reactions_count = reactions_count + 40 WHERE id % 9 = 0")
    world.conn.execute("UPDATE users SET reputation = 0 WHERE id % 7 = 0")
    changed = run_rank(nightly)
    assert changed.posts_rescored > 0
    done = run_backfill(world, None, dataclasses.replace(options, resume=True))
    assert done.backfill_done
    assert_world(world, V2)


def test_backfill_and_nightly_rank_exclude_each_other(world: Context, v2: Heuristic) -> None:
    stop = threading.Event()
    failures: list[BaseException] = []

    def nightly_during_backfill(progress: RecordingProgress) -> None:
        if progress.current == "users" and not stop.is_set():
            stop.set()
            try:
                with open_context(world.settings, heuristic=v2) as other:
                    run_rank(dataclasses.replace(other, heuristic=v2))
            except LockedError as exc:
                failures.append(exc)

    run_backfill(world, v2, BackfillOptions(method="in-place", chunk_rows=500), stop=stop,
                 progress=RecordingProgress(nightly_during_backfill))  # fmt: skip
    assert len(failures) == 1 and "backfill shard" in str(failures[0])


def snapshot(ctx: Context) -> dict[str, Any]:
    tables = {
        name: ctx.conn.execute(f"SELECT * FROM {name} ORDER BY 1, 2").fetchall()
        for name in ("post_score", "feed_entry", "rank_backfill", "rank_heuristic")
    }
    feeds = {u: cached(ctx, "u", u) for u in user_ids(ctx)}
    return {"tables": tables, "feeds": feeds}


def test_dry_run_counts_what_would_change_and_writes_nothing(world: Context, v2: Heuristic) -> None:
    before = snapshot(world)
    users = user_ids(world)
    preview = preview_backfill(world, v2, PreviewOptions(sample_feeds=len(users), chunk_rows=800))
    assert snapshot(world) == before
    assert preview.current_version == "default-1" and preview.heuristic_version == "v2"
    live_now = live_post_scores(world.conn)
    live_v2 = live_post_scores(world.conn, V2)
    assert preview.posts == len(live_now)
    assert preview.posts_changed == sum(live_v2[p][1] != live_now[p][1] for p in live_now)
    assert preview.entries == preview.entries_changed == entry_count(world)
    # Top-20 movement over every non-empty feed, computed independently.
    now_feeds = expected_user_feeds(world.conn)
    v2_feeds = expected_user_feeds(world.conn, V2)
    overlaps, unchanged = [], 0
    for user_id, feed in now_feeds.items():
        if not feed:
            continue
        top_now = [p for p, _ in feed[:20]]
        top_v2 = [p for p, _ in v2_feeds[user_id][:20]]
        overlaps.append(len(set(top_now) & set(top_v2)) / len(top_now))
        unchanged += top_now == top_v2
    assert preview.feeds_sampled == len(overlaps)
    assert preview.top_overlap_mean == pytest.approx(sum(overlaps) / len(overlaps))
    assert preview.top_overlap_min == pytest.approx(min(overlaps))
    assert preview.top_unchanged_share == pytest.approx(unchanged / len(overlaps))
    assert preview.top_overlap_min is not None and preview.top_overlap_min < 1.0


def test_dry_run_of_the_same_formula_under_a_new_name_moves_nothing(
    world: Context, tmp_path: Path
) -> None:
    renamed = load_heuristic(
        write_heuristic(tmp_path, {**default_coefficients(), "version": "default-2"})
    )
    preview = preview_backfill(world, renamed, PreviewOptions(shard=Shard(1, 3), sample_feeds=30))
    assert preview.posts_changed == preview.entries_changed == 0
    assert preview.entries > 0
    assert preview.feeds_sampled == 30
    assert preview.top_overlap_min == preview.top_unchanged_share == 1.0
