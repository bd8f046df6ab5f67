"""Rebuilds against real servers: exact, idempotent, atomic for readers, resumable after a kill.

Expected feeds come from tests/integration/expected.py (plain SQL and math)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import signal
import threading
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.errors import BadInputError, LockedError
from feedctl.pipelines.cache import warm as cache_warm
from feedctl.pipelines.cache.rebuild import LOCK_NAME, rebuild_all, rebuild_community, rebuild_users
from feedctl.read.pages import FeedReader
from feedctl.synth import SeedSpec, seed

from drain import fan_out_everything
from expected import expected_community_feed, expected_user_feeds
from processes import run_feedctl
from progress_recorder import RecordingProgress

pytestmark = pytest.mark.redis_cluster_too  # each test on one server and on a cluster

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SPEC = SeedSpec(users=150, communities=4, posts=160, seed=17, now=NOW)


@pytest.fixture
def seeded(ctx: Context) -> Context:
    seed(ctx.conn, SPEC)
    fan_out_everything(ctx)
    return ctx


def stored(conn: psycopg.Connection[Any], user_id: int) -> list[tuple[int, float]]:
    rows = conn.execute(
        "SELECT post_id, score FROM feed_entry WHERE user_id = %s "
        "ORDER BY score DESC, post_id DESC",
        (user_id,),
    )
    return [(r[0], r[1]) for r in rows]


def cached(ctx: Context, user_id: int) -> list[tuple[int, float]] | None:
    found = ctx.cache.members(f"{ctx.prefix}feed:u:{user_id}")
    return None if found is None else found[0]


def assert_exact(ctx: Context, users: list[int], cached_users: set[int]) -> None:
    expected = expected_user_feeds(ctx.conn)
    for user_id in users:
        want = expected[user_id]  # the whole feed: PostgreSQL is not truncated
        got = stored(ctx.conn, user_id)
        assert [p for p, _ in got] == [p for p, _ in want], user_id
        assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-9)
        if user_id in cached_users:
            assert cached(ctx, user_id) == got[: ctx.cap]  # Redis holds the top cap
        else:
            assert cached(ctx, user_id) is None


def all_users(ctx: Context) -> list[int]:
    return [r[0] for r in ctx.conn.execute("SELECT id FROM users ORDER BY id")]


def test_rebuild_is_exact_and_idempotent(seeded: Context) -> None:
    ctx = seeded
    users = all_users(ctx)
    expected = expected_user_feeds(ctx.conn)
    cache_warm.warm(ctx, "user", users)
    assert max(len(f) for f in expected.values()) > ctx.cap
    ctx.conn.execute("DELETE FROM feed_entry WHERE post_id % 5 = 0")
    first = rebuild_users(ctx, users, chunk_size=40)
    assert first.users == len(users)
    assert first.entries_after == sum(len(f) for f in expected.values())
    assert first.entries_added == first.entries_after - first.entries_before > 0
    assert first.entries_removed == first.entries_updated == 0
    assert first.cached_feeds_rewritten == len(users)
    assert first.cached_entries_after == sum(min(len(f), ctx.cap) for f in expected.values())
    assert_exact(ctx, users, set(users))

    second = rebuild_users(ctx, users, chunk_size=40)
    assert (second.entries_removed, second.entries_added, second.entries_updated) == (0, 0, 0)
    assert second.entries_before == second.entries_after == first.entries_after
    assert second.cached_entries_before == second.cached_entries_after
    assert_exact(ctx, users, set(users))


def test_rebuild_restores_a_damaged_feed(seeded: Context) -> None:
    ctx = seeded
    user_id = max(expected_user_feeds(ctx.conn).items(), key=lambda kv: len(kv[1]))[0]
    ctx.conn.execute("DELETE FROM feed_entry WHERE user_id = %s AND post_id %% 3 = 0", (user_id,))
    ctx.conn.execute("UPDATE feed_entry SET score = score + 1 WHERE user_id = %s", (user_id,))
    report = rebuild_users(ctx, [user_id])
    assert report.entries_added > 0 and report.entries_updated > 0
    assert_exact(ctx, [user_id], set())


def test_dry_run_counts_and_samples_what_a_rebuild_then_does(seeded: Context) -> None:
    ctx = seeded
    users = all_users(ctx)
    user_id = users[0]
    ctx.conn.execute("DELETE FROM feed_entry WHERE user_id = %s", (user_id,))
    before = {u: stored(ctx.conn, u) for u in users}
    plan = rebuild_users(ctx, users, dry_run=True, chunk_size=50)
    assert {u: stored(ctx.conn, u) for u in users} == before  # nothing changed
    assert plan.dry_run and plan.sample
    expected = expected_user_feeds(ctx.conn)
    for change in plan.sample:
        top = dict(expected[change.user_id])
        if change.change == "add":
            assert change.post_id in top and change.post_id not in dict(before[change.user_id])
        elif change.change == "remove":
            assert change.post_id not in top and change.post_id in dict(before[change.user_id])
    done = rebuild_users(ctx, users, chunk_size=50)
    counts = ("entries_before", "entries_after", "entries_removed", "entries_added")
    assert [getattr(done, c) for c in counts] == [getattr(plan, c) for c in counts]


def test_community_rebuild_rewrites_members_and_the_community_cache(seeded: Context) -> None:
    ctx = seeded
    community_id = ctx.conn.execute(
        "SELECT community_id FROM memberships GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()[0]
    members = [
        r[0]
        for r in ctx.conn.execute(
            "SELECT user_id FROM memberships WHERE community_id = %s ORDER BY 1", (community_id,)
        )
    ]
    key = f"{ctx.prefix}feed:c:{community_id}"
    ctx.cache.replace(key, [(1, 1.0)], False)  # a stale cached community feed
    report = rebuild_community(ctx, community_id)
    assert report.users == len(members)
    assert_exact(ctx, members, {u for u in members if cached(ctx, u) is not None})
    found = ctx.cache.members(key)
    assert found is not None
    want = expected_community_feed(ctx.conn, community_id)[: ctx.cap]
    assert [p for p, _ in found[0]] == [p for p, _ in want]


def test_readers_see_the_old_feed_or_the_new_one_never_an_empty_or_partial_one(
    seeded: Context, settings: Settings
) -> None:
    ctx = seeded
    expected = expected_user_feeds(ctx.conn)
    watched = sorted(expected, key=lambda u: len(expected[u]), reverse=True)[:3]
    cache_warm.warm(ctx, "user", all_users(ctx))
    shorter = dataclasses.replace(settings, feed_retention=_retention_cutting(ctx, watched))
    old = {u: [p for p, _ in expected[u]] for u in watched}
    with open_context(shorter) as cutting:
        rebuild_users(cutting, watched)
        new = {u: [p for p, _ in stored(ctx.conn, u)] for u in watched}
    rebuild_users(ctx, watched)
    assert all(len(old[u]) > len(new[u]) > 0 for u in watched)
    seen: dict[int, set[str]] = {u: set() for u in watched}
    wrong: list[tuple[int, list[int]]] = []
    done = threading.Event()

    def read_continuously() -> None:
        with open_context(settings) as reading:
            reader = FeedReader.for_settings(reading.conn, reading.cache, settings)
            while not done.is_set():
                for user_id in watched:
                    ids = [i.post_id for i in reader.user_feed(user_id, 500).items]
                    if ids == old[user_id]:
                        seen[user_id].add("old")
                    elif ids == new[user_id]:
                        seen[user_id].add("new")
                    else:
                        wrong.append((user_id, ids))

    thread = threading.Thread(target=read_continuously)
    thread.start()
    # Rebuild with a retention that drops the older posts, then keeping everything (they
    # come back), and again: every change a reader could catch is a rebuild's swap.
    try:
        with open_context(shorter) as cutting:
            for _ in range(3):
                rebuild_all(cutting, chunk_size=7)
                rebuild_all(ctx, chunk_size=7)
            rebuild_all(cutting, chunk_size=7)
    finally:
        done.set()
        thread.join(timeout=60)
    assert not wrong, f"a reader saw a feed that was neither old nor new: {wrong[0]}"
    assert all(seen[u] == {"old", "new"} for u in watched), seen


def _retention_cutting(ctx: Context, users: list[int]) -> str:
    """A retention (in minutes) whose cutoff falls mid-way into the widest gap between the
    middle half of these users' posts, so that it cuts the same posts for a while."""
    times = sorted(
        r[0]
        for r in ctx.conn.execute(
            "SELECT DISTINCT created_at FROM feed_entry WHERE user_id = ANY(%s)", (users,)
        )
    )
    middle = times[len(times) // 4 : 3 * len(times) // 4]
    start, end = max(itertools.pairwise(middle), key=lambda g: g[1] - g[0])
    cutoff = start + (end - start) / 2
    return f"{int((datetime.now(UTC) - cutoff).total_seconds() // 60)}m"


def run_cli(settings: Settings, *args: str, kill_at: str | None = None) -> tuple[int, str]:
    done = run_feedctl(settings, *args, kill_at=kill_at)
    return done.returncode, done.stdout


@pytest.mark.parametrize("point", ["rebuild.after_commit@3", "rebuild.after_cache@2"])
def test_killed_rebuild_all_resumes_where_it_stopped(
    seeded: Context, settings: Settings, point: str
) -> None:
    ctx = seeded
    users = all_users(ctx)
    cache_warm.warm(ctx, "user", users)
    args = ("--json", "rebuild", "--all", "--chunk-size", "30")
    code, _ = run_cli(settings, *args, kill_at=point)
    assert code == -signal.SIGKILL, f"the process was not killed at {point}"
    code, out = run_cli(settings, *args, "--resume")
    assert code == 0, out
    report = json.loads(out)
    assert report["resumed_after_user"] in (users[29], users[59])  # after chunk 1 or 2
    assert report["users"] == len([u for u in users if u > report["resumed_after_user"]])
    assert_exact(ctx, users, set(users))
    code, out = run_cli(settings, *args, "--resume")  # finished: starts from the first user
    assert code == 0 and json.loads(out)["resumed_after_user"] == 0


def test_stop_request_ends_between_chunks_and_resume_finishes(seeded: Context) -> None:
    ctx = seeded
    users = all_users(ctx)
    stop = threading.Event()
    stopped = rebuild_all(
        ctx, chunk_size=25, progress=RecordingProgress(lambda p: stop.set()), stop=stop
    )
    assert stopped.stopped and stopped.users == 25
    rest = rebuild_all(ctx, chunk_size=25, resume=True)
    assert not rest.stopped and rest.resumed_after_user == users[24]
    assert rest.users == len(users) - 25
    assert_exact(ctx, users, set())


def test_resume_with_another_cap_is_refused(seeded: Context, settings: Settings) -> None:
    stop = threading.Event()
    rebuild_all(seeded, chunk_size=25, progress=RecordingProgress(lambda p: stop.set()), stop=stop)
    with (
        open_context(dataclasses.replace(settings, feed_cap=40)) as other,
        pytest.raises(BadInputError, match="cap 50"),
    ):
        rebuild_all(other, resume=True)


def test_one_rebuild_all_at_a_time(seeded: Context, settings: Settings) -> None:
    with psycopg.connect(settings.database_url or "", autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (LOCK_NAME,))
        with pytest.raises(LockedError):
            rebuild_all(seeded)
