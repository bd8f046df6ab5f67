"""Sharded fan-out: N `feedctl fanout --shard i/N` processes running at once end with exactly
the feed_entry rows and cached sorted sets of one unsharded run over the same events, and
changing N (`feedctl fanout reshard`) with shards stopped at different positions loses and
repeats nothing (docs/decisions/0033)."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from conftest import MigratedDatabase

from feedctl.config import Settings
from feedctl.context import Context, open_context
from feedctl.db.locks import advisory_lock
from feedctl.errors import BadInputError, LockedError
from feedctl.pipelines.cache import verify as cache_verify
from feedctl.pipelines.cache import warm as cache_warm
from feedctl.pipelines.fanout.run import run_fanout
from feedctl.pipelines.fanout.shards import EVERYONE, Shard, reshard
from feedctl.synth import SeedSpec, seed

from drain import fan_out_everything
from processes import feedctl_env, run_feedctl

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
FIRST = SeedSpec(users=240, communities=5, posts=260, seed=5, now=NOW, deleted_share=0.05)
SECOND = SeedSpec(users=60, communities=2, posts=90, seed=6, now=NOW, deleted_share=0.05)


def churn(conn: psycopg.Connection[Any], seed_value: int) -> None:
    """The app's other events: members leave (and some rejoin), posts are deleted."""
    with conn.transaction():
        left = conn.execute(
            "DELETE FROM memberships WHERE (user_id * 7 + community_id + %s) %% 11 = 0 "
            "RETURNING community_id, user_id",
            (seed_value,),
        ).fetchall()
        for community_id, user_id in sorted(left):
            conn.execute(
                "INSERT INTO feed_events (kind, community_id, user_id) "
                "VALUES ('member_left', %s, %s)",
                (community_id, user_id),
            )
        for community_id, user_id in sorted(left)[::3]:
            conn.execute(
                "INSERT INTO memberships (community_id, user_id) VALUES (%s, %s)",
                (community_id, user_id),
            )
            conn.execute(
                "INSERT INTO feed_events (kind, community_id, user_id) "
                "VALUES ('member_joined', %s, %s)",
                (community_id, user_id),
            )
        gone = conn.execute(
            "UPDATE posts SET deleted_at = %s WHERE deleted_at IS NULL AND (id + %s) %% 13 = 0 "
            "RETURNING id, community_id",
            (NOW, seed_value),
        ).fetchall()
        for post_id, community_id in sorted(gone):
            conn.execute(
                "INSERT INTO feed_events (kind, post_id, community_id) "
                "VALUES ('post_deleted', %s, %s)",
                (post_id, community_id),
            )


def populate(ctx: Context, spec: SeedSpec) -> None:
    seed(ctx.conn, spec)
    churn(ctx.conn, spec.seed)


def warm_some(ctx: Context) -> None:
    """Cache every other user's feed and every community's, so cached writes are compared."""
    users = [r[0] for r in ctx.conn.execute("SELECT id FROM users WHERE id % 2 = 0 ORDER BY id")]
    cache_warm.warm(ctx, "user", users, force=True)
    communities = [r[0] for r in ctx.conn.execute("SELECT id FROM communities ORDER BY id")]
    cache_warm.warm(ctx, "community", communities, force=True)


def entries(ctx: Context) -> list[tuple[Any, ...]]:
    return ctx.conn.execute(
        "SELECT user_id, post_id, community_id, author_id, score, created_at "
        "FROM feed_entry ORDER BY user_id, post_id"
    ).fetchall()


def cached(ctx: Context) -> dict[str, Any]:
    """Every cached feed under the context's prefix (sentinel included), by key without it."""
    found = {}
    for keys in ctx.cache.scan_keys():
        for key, raw in zip(
            keys, [ctx.cache.client.zrange(k, 0, -1, withscores=True) for k in keys], strict=True
        ):
            found[key[len(ctx.prefix) :]] = raw
    return found


@pytest.fixture
def reference(settings: Settings, migrated_database: MigratedDatabase) -> Iterator[Context]:
    """A second database and key space where one unsharded fan-out runs."""
    with migrated_database() as url:
        other = dataclasses.replace(
            settings, database_url=url, redis_key_prefix=f"{settings.redis_key_prefix}ref:"
        )
        with open_context(other) as context:
            yield context


def start_shards(
    settings: Settings, count: int, *extra: str, env: dict[str, str] | None = None
) -> list[subprocess.Popen[str]]:
    env = feedctl_env(settings, **(env or {}))
    return [
        subprocess.Popen(
            [sys.executable, "-m", "feedctl", "fanout", "--shard", f"{i}/{count}", *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]


def wait_all(processes: list[subprocess.Popen[str]]) -> list[str]:
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, err
        outputs.append(out)
    return outputs


def best_first(raw: list[tuple[bytes, float]]) -> tuple[bytes, list[tuple[int, float]]]:
    """A cached feed as (sentinel, members best first)."""
    items = sorted(((int(m), score) for m, score in raw[1:]), key=lambda i: (i[1], i[0]))
    return raw[0][0], items[::-1]


def assert_same(ctx: Context, reference: Context) -> None:
    """The same rows; the same cached feeds, member for member and score for score.

    A truncated cached feed (sentinel `t`) is an exact prefix of its feed, but how long a
    prefix depends on timing even without shards: a post removed from it leaves it one
    shorter until a refresh reads PostgreSQL again, and the cache stage reads PostgreSQL
    while the next batch commits. So one of the two must be a prefix of the other (the
    shorter one truncated), and `cache verify` must find each equal to its feed's top.
    """
    want = entries(reference)
    assert want, "the reference run wrote no entries"
    assert entries(ctx) == want
    mine, theirs = cached(ctx), cached(reference)
    assert len(theirs) > 10
    assert sorted(mine) == sorted(theirs)
    for key, raw in theirs.items():
        (flag, items), (their_flag, their_items) = best_first(mine[key]), best_first(raw)
        shorter = min(len(items), len(their_items))
        assert items[:shorter] == their_items[:shorter], key
        if len(items) != len(their_items):  # only a truncated prefix may be shorter
            shorter_flag = flag if len(items) < len(their_items) else their_flag
            assert shorter_flag == b"t", key
    for world in (ctx, reference):
        checked = cache_verify.verify(world, sample=len(theirs) * 2, settle_seconds=0.0)
        assert checked.feeds_compared == len(theirs)
        assert checked.mismatches_found == 0, checked.mismatches[:3]


def test_three_concurrent_shards_equal_one_unsharded_run(
    ctx: Context, reference: Context, settings: Settings
) -> None:
    for world in (ctx, reference):
        populate(world, FIRST)
        fan_out_everything(world)  # a first backlog, then caches to write into
        warm_some(world)
        populate(world, SECOND)
    fan_out_everything(reference)

    assert run_feedctl(settings, "fanout", "reshard", "3").returncode == 0
    reports = [json.loads(out) for out in wait_all(start_shards(settings, 3, "--json"))]
    assert [r["shard"] for r in reports] == ["0/3", "1/3", "2/3"]
    assert all(r["events"] == reports[0]["events"] > 0 for r in reports)  # each read all

    assert_same(ctx, reference)
    positions = ctx.conn.execute(
        "SELECT consumer, last_txid::text, last_event_id FROM feed_offset_state ORDER BY consumer"
    ).fetchall()
    assert [p[0] for p in positions] == ["default#0/3", "default#1/3", "default#2/3"]
    assert len({p[1:] for p in positions}) == 1  # all read the whole stream


def test_shards_that_switch_a_community_to_pull_equal_one_unsharded_run(
    ctx: Context, reference: Context, settings: Settings
) -> None:
    for world in (ctx, reference):
        populate(world, FIRST)
        warm_some(world)
    sizes = ctx.conn.execute(
        "SELECT count(*) FROM memberships GROUP BY community_id ORDER BY 1 DESC LIMIT 2"
    ).fetchall()
    threshold = int(sizes[1][0])  # the largest community is pulled, by whichever shard
    ctx, reference = (
        dataclasses.replace(w, settings=dataclasses.replace(w.settings, pull_threshold=threshold))
        for w in (ctx, reference)
    )
    fan_out_everything(reference)

    assert run_feedctl(settings, "fanout", "reshard", "3").returncode == 0
    wait_all(start_shards(settings, 3, env={"FEEDCTL_PULL_THRESHOLD": str(threshold)}))

    assert_same(ctx, reference)
    pulled = "SELECT community_id, members FROM feed_pull_community ORDER BY 1"
    want = reference.conn.execute(pulled).fetchall()
    assert len(want) == 1
    assert ctx.conn.execute(pulled).fetchall() == want


def test_changing_the_shard_count_with_shards_stopped_apart(
    ctx: Context, reference: Context, settings: Settings
) -> None:
    for world in (ctx, reference):
        populate(world, FIRST)
        warm_some(world)  # cached (empty) before any fan-out, so that writes land in both
    fan_out_everything(reference)

    run_fanout(ctx, max_events=150)  # unsharded, part of the way
    reshard(ctx, 3)
    # The three shards stop at different positions: the reshard must catch them up.
    run_fanout(ctx, shard=Shard(0, 3), max_events=40, batch_size=15)
    run_fanout(ctx, shard=Shard(1, 3), max_events=400, batch_size=60)
    report = reshard(ctx, 2)
    assert (report.shards_before, report.shards_after) == (3, 2)
    assert report.events_caught_up > 0

    for world in (ctx, reference):
        populate(world, SECOND)
    fan_out_everything(reference)
    for world in (ctx, reference):
        populate(world, dataclasses.replace(SECOND, seed=7))
    fan_out_everything(reference)
    wait_all(start_shards(settings, 2, "--batch-size", "30"))
    # ...and back to unsharded.
    assert run_feedctl(settings, "fanout", "reshard", "1").returncode == 0
    assert run_feedctl(settings, "fanout").returncode == 0

    assert_same(ctx, reference)


def test_a_run_that_does_not_match_the_shard_count_is_refused(
    ctx: Context, settings: Settings
) -> None:
    populate(ctx, dataclasses.replace(FIRST, users=40, posts=30))
    reshard(ctx, 2)
    with pytest.raises(BadInputError, match="runs as 2 shards"):
        run_fanout(ctx)
    with pytest.raises(BadInputError, match="runs as 2 shards"):
        run_fanout(ctx, shard=Shard(0, 3))
    result = run_feedctl(settings, "fanout", "--shard", "1/3")
    assert result.returncode == 2
    assert "fanout reshard" in result.stderr and "Traceback" not in result.stderr
    assert run_feedctl(settings, "fanout", "--shard", "3/2").returncode == 2
    assert run_fanout(ctx, shard=Shard(1, 2)).events > 0
    assert ctx.conn.execute("SELECT count(*) FROM feed_offset_state").fetchone() == (2,)


def test_a_reshard_waits_for_no_running_shard(ctx: Context, settings: Settings) -> None:
    reshard(ctx, 2)
    # A running shard holds the layout lock shared, as run_fanout does.
    with (
        psycopg.connect(settings.database_url or "", autocommit=True) as other,
        advisory_lock(other, "feedctl.fanout-layout:default", shared=True),
    ):
        with pytest.raises(LockedError):
            reshard(ctx, 3)
        result = run_feedctl(settings, "fanout", "reshard", "3")
        assert result.returncode == 75, result.stderr
    assert reshard(ctx, 3).shards_before == 2
    assert run_fanout(ctx, shard=Shard(2, 3)).shard == "2/3"
    with pytest.raises(BadInputError):
        run_fanout(ctx, shard=EVERYONE)


def test_a_shard_killed_mid_run_resumes_to_the_same_result(
    ctx: Context, reference: Context, settings: Settings
) -> None:
    for world in (ctx, reference):
        populate(world, FIRST)
        warm_some(world)
    fan_out_everything(reference)
    reshard(ctx, 3)
    killed = run_feedctl(
        settings, "fanout", "--shard", "1/3", "--batch-size", "25", kill_at="fanout.after_commit@2"
    )
    assert killed.returncode == -signal.SIGKILL
    wait_all(start_shards(settings, 3, "--batch-size", "25"))
    assert_same(ctx, reference)
