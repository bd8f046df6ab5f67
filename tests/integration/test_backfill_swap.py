"""`rank backfill` by partition swap: each feed_entry partition is rewritten with the new
scores and swapped in; the result equals the in-place path's, readers keep reading, a
concurrent fan-out loses nothing, and the method follows how many scores change."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.pipelines.ranking.backfill.preview import PreviewOptions, preview_backfill
from feedctl.pipelines.ranking.backfill.run import BackfillOptions, run_backfill
from feedctl.pipelines.ranking.backfill.shards import Shard
from feedctl.pipelines.ranking.backfill.swap import feed_partitions, swap_rewrite
from feedctl.rank.heuristic import Heuristic, load_heuristic

from drain import fan_out_everything
from expected import default_coefficients
from progress_recorder import RecordingProgress
from rank_world import V2, assert_world, build_world, write_heuristic


@pytest.fixture
def world(ctx: Context) -> Context:
    build_world(ctx)
    return ctx


@pytest.fixture
def v2(tmp_path: Path) -> Heuristic:
    return load_heuristic(write_heuristic(tmp_path, V2))


def partition_tables(ctx: Context) -> list[str]:
    rows = ctx.conn.execute(
        "SELECT relname FROM pg_class WHERE relname LIKE 'feed\\_entry\\_p%' AND relkind = 'r' "
        "ORDER BY relname"
    )
    return [r[0] for r in rows]


def test_swap_backfill_rewrites_every_partition(world: Context, v2: Heuristic) -> None:
    before = partition_tables(world)
    entries = world.conn.execute("SELECT count(*) FROM feed_entry").fetchone()
    report = run_backfill(world, v2, BackfillOptions(method="swap"))
    assert report.backfill_done and report.method == "swap"
    assert report.partitions_swapped == len(feed_partitions(world.conn)) == 16
    assert entries is not None and report.entries_updated == entries[0]
    assert_world(world, V2)
    assert partition_tables(world) == before  # same names, nothing left behind
    left = world.conn.execute("SELECT count(*) FROM feed_entry_swap_log").fetchone()
    assert left == (0,)
    triggers = world.conn.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'feedctl_swap_log'"
    ).fetchone()
    assert triggers == (0,)


def test_auto_chooses_swap_for_a_big_change_and_in_place_for_a_small_one(
    world: Context, v2: Heuristic, tmp_path: Path
) -> None:
    report = run_backfill(world, v2, BackfillOptions())
    assert report.method == "swap" and report.posts_changed > 0.5 * report.posts_rescored
    assert_world(world, V2)
    # the same formula under a new name: no score changes, so in place (which writes nothing)
    same = dataclasses.replace(v2, version="v2b")
    report = run_backfill(world, same, BackfillOptions())
    assert report.method == "in_place" and report.posts_changed == 0
    assert report.entries_updated == 0 and report.partitions_swapped == 0


def test_swap_shards_split_the_partitions(world: Context, v2: Heuristic) -> None:
    reports = [
        run_backfill(world, v2, BackfillOptions(shard=Shard(i, 3), method="swap")) for i in range(3)
    ]
    assert [r.partitions_swapped for r in reports] == [6, 5, 5]  # remainders mod 3
    assert reports[-1].backfill_done
    assert_world(world, V2)


def test_in_place_stays_available(world: Context, v2: Heuristic) -> None:
    report = run_backfill(world, v2, BackfillOptions(method="in-place"))
    assert report.method == "in_place" and report.partitions_swapped == 0
    assert_world(world, V2)
    assert default_coefficients()["version"] != V2["version"]


def test_dry_run_says_which_method_auto_would_choose(world: Context, v2: Heuristic) -> None:
    options = PreviewOptions(sample_feeds=0)
    assert preview_backfill(world, v2, options).method == "swap"
    run_backfill(world, v2, BackfillOptions())
    # the same formula under a new name, and three posts got reactions since: few changes
    world.conn.execute(
        "UPDATE posts SET reactions_count = reactions_count + 5 "
        "WHERE id IN (SELECT post_id FROM post_score ORDER BY post_id LIMIT 3)"
    )
    found = preview_backfill(world, dataclasses.replace(v2, version="v2c"), options)
    assert (found.method, found.posts_changed) == ("in_place", 3), found


def _new_post(conn: psycopg.Connection[Any], community_id: int, reactions: int) -> int:
    with conn.transaction():
        conn.execute("LOCK TABLE posts IN SHARE ROW EXCLUSIVE MODE")  # one id at a time
        row = conn.execute("SELECT max(id) + 1 FROM posts").fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO posts (id, community_id, author_id, created_at, reactions_count) "
            "VALUES (%s, %s, 1, date_trunc('second', now()), %s)",
            (row[0], community_id, reactions),
        )
        conn.execute(
            "INSERT INTO feed_events (kind, post_id, community_id) VALUES ('post_created', %s, %s)",
            (row[0], community_id),
        )
        return int(row[0])


class _HookedProgress(RecordingProgress):
    """Runs `on_status` on each status line (the swap reports one between rewrite and swap)."""

    def __init__(self, on_status: Callable[[str], None]) -> None:
        super().__init__()
        self.on_status = on_status

    def status(self, text: str) -> None:
        super().status(text)
        self.on_status(text)


def test_readers_keep_reading_and_concurrent_fan_out_loses_nothing(
    world: Context, settings: Settings, v2: Heuristic
) -> None:
    """A fan-out process of its own writes new posts into feeds all through a swap backfill
    (and, on cue, while a partition is rewritten but not yet swapped in); a reader counts a
    feed all along. Every entry ends in PostgreSQL and the caches under the new scores."""
    stop = threading.Event()
    errors: list[BaseException] = []
    communities = [r[0] for r in world.conn.execute("SELECT id FROM communities ORDER BY id")]
    reader_user = world.conn.execute(
        "SELECT user_id FROM feed_entry GROUP BY user_id ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()
    assert reader_user is not None
    with open_context(settings, heuristic=v2) as writer:
        fan_out_everything(writer)  # the seeded backlog, before anything starts
        posted: list[int] = []
        cued = threading.Semaphore(0)
        served = threading.Semaphore(0)

        def write() -> None:
            try:
                while not stop.is_set():
                    cue = cued.acquire(blocking=False)
                    community = communities[len(posted) % len(communities)]
                    posted.append(_new_post(writer.conn, community, len(posted) % 50))
                    fan_out_everything(writer)
                    if cue:
                        served.release()
            except BaseException as exc:  # reported by the test
                errors.append(exc)

        floor = world.conn.execute(
            "SELECT count(*) FROM feed_entry WHERE user_id = %s", reader_user
        ).fetchone()
        reads: list[int] = []

        def read() -> None:
            try:
                with psycopg.connect(world.database_url, autocommit=True) as conn:
                    while not stop.is_set():
                        row = conn.execute(
                            "SELECT count(*) FROM feed_entry WHERE user_id = %s", reader_user
                        ).fetchone()
                        reads.append(int(row[0]) if row else -1)
            except BaseException as exc:
                errors.append(exc)

        def in_the_window(text: str) -> None:  # a partition is rewritten, not swapped in
            if "rewritten" in text and len(posted) < 1_000:
                cued.release()
                assert served.acquire(timeout=60), "the fan-out did not write in time"

        threads = [threading.Thread(target=write), threading.Thread(target=read)]
        for thread in threads:
            thread.start()
        try:
            report = run_backfill(
                world, v2, BackfillOptions(method="swap"), progress=_HookedProgress(in_the_window)
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        assert not errors, errors
        fan_out_everything(writer)
        assert report.backfill_done and report.partitions_swapped == 16
        assert len(posted) >= 16  # at least one post fanned out inside each partition's window
        assert report.entries_replayed > 0  # written after a rewrite, replayed into it
        assert floor is not None and reads and min(reads) >= floor[0]
        assert_world(world, V2)


def test_the_swap_attaches_without_scanning_under_its_lock(ctx: Context) -> None:
    """The rewritten table carries a CHECK of its hash bound, so ATTACH PARTITION proves the
    bound from it instead of reading every row while feed_entry is locked."""
    conn = ctx.conn
    conn.execute(
        "INSERT INTO feed_entry (user_id, post_id, community_id, author_id, score, created_at) "
        "SELECT u, 1, 1, 1, 1, now() FROM generate_series(1, 1000) u"
    )
    partition = feed_partitions(conn)[3]
    rows, _ = swap_rewrite(conn, partition)
    notices: list[str] = []
    conn.add_notice_handler(lambda notice: notices.append(notice.message_primary or ""))
    with conn.transaction():
        conn.execute("SET LOCAL client_min_messages = debug1")
        conn.execute("SELECT feedctl_swap_finish(%s)", (partition.name,))
    implied = f'partition constraint for table "{partition.name}_swap" is implied by existing'
    assert any(n.startswith(implied) for n in notices), notices
    table = sql.Identifier(partition.name)
    count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
    assert count == (rows,) and 0 < rows < 1000


def test_a_stopped_swap_backfill_resumes(world: Context, v2: Heuristic) -> None:
    stop = threading.Event()

    def after_three(progress: RecordingProgress) -> None:
        if progress.advances.get("partitions", 0) >= 3:
            stop.set()

    options = BackfillOptions(method="swap")
    report = run_backfill(world, v2, options, stop=stop, progress=RecordingProgress(after_three))
    assert report.stopped and not report.shard_done and report.partitions_swapped == 3
    resumed = run_backfill(world, None, dataclasses.replace(options, resume=True))
    assert resumed.backfill_done and resumed.partitions_swapped == 13
    assert_world(world, V2)
