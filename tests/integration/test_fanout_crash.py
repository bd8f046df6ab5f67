"""`feedctl fanout` killed with SIGKILL at several points and run again ends exactly as an
uninterrupted run: the same feed_entry rows and the same cached sorted sets."""

from __future__ import annotations

import signal
from datetime import UTC, datetime

import pytest

from feedctl.config import Settings
from feedctl.context import Context
from feedctl.pipelines.cache import warm as cache_warm
from feedctl.read import cache_state
from feedctl.synth import SeedSpec, seed

from expected import expected_user_feeds
from processes import run_feedctl

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def run_cli(settings: Settings, *args: str, kill_at: str | None = None) -> int:
    return run_feedctl(settings, *args, kill_at=kill_at).returncode


def stored(ctx: Context, user_id: int) -> list[int]:
    rows = ctx.conn.execute(
        "SELECT post_id FROM feed_entry WHERE user_id = %s ORDER BY score DESC, post_id DESC",
        (user_id,),
    )
    return [r[0] for r in rows]


@pytest.mark.parametrize(
    "point",
    [
        "fanout.after_read@2",  # a batch read, nothing written
        "fanout.after_write@2",  # rows written inside the open transaction
        "fanout.after_commit@2",  # committed to PostgreSQL, Redis not yet written
        "fanout.mid_cache@5",  # some cached feeds written, others not
    ],
)
def test_killed_fanout_resumes_to_the_uninterrupted_state(
    ctx: Context, settings: Settings, point: str
) -> None:
    seed(ctx.conn, SeedSpec(users=150, communities=4, posts=120, seed=11, now=NOW))
    assert run_cli(settings, "fanout", "--max-events", "300", "--batch-size", "100") == 0
    users = [r[0] for r in ctx.conn.execute("SELECT id FROM users ORDER BY id")]
    cache_warm.warm(ctx, "user", users, force=True)

    code = run_cli(settings, "fanout", "--batch-size", "25", kill_at=point)
    assert code == -signal.SIGKILL, f"the process was not killed at {point}"
    if point in ("fanout.after_commit@2", "fanout.mid_cache@5"):
        # killed after a commit, before its Redis writes: they are owed, and no page is
        # served from Redis alone until they are done
        assert cache_state.ask(ctx.conn).owed == ("fanout",)
    assert run_cli(settings, "fanout", "--batch-size", "25") == 0
    assert not cache_state.ask(ctx.conn).in_flight  # the next run wrote them

    expected = expected_user_feeds(ctx.conn)
    duplicates = ctx.conn.execute(
        "SELECT count(*) - count(DISTINCT (user_id, post_id)) FROM feed_entry"
    ).fetchone()
    assert duplicates == (0,)
    for user_id in users:
        want = [p for p, _ in expected[user_id]]
        assert stored(ctx, user_id) == want
        found = ctx.cache.members(f"{ctx.prefix}feed:u:{user_id}")
        assert found is not None
        assert [p for p, _ in found[0]] == want[: ctx.cap]
    lag = ctx.conn.execute(
        "SELECT count(*) FROM feed_events e, feed_offset_state s "
        "WHERE (e.txid, e.id) > (s.last_txid, s.last_event_id)"
    ).fetchone()
    assert lag == (0,)
