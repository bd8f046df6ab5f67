"""feedctl.Client and feedctl.AsyncClient against real servers: the same pages as FeedReader,
many concurrent readers on one client, rebuilds, repair marks, clean errors, and the README's
lifespan example run as written."""

from __future__ import annotations

import asyncio
import re
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

import feedctl
from feedctl.cache.keys import FeedRef
from feedctl.config import Settings
from feedctl.context import Context
from feedctl.errors import BadInputError, CursorError, NotFoundError, ServiceUnavailableError
from feedctl.read.pages import FeedPage, FeedReader
from feedctl.synth import SeedSpec, seed

from drain import fan_out_everything

WORLD = SeedSpec(users=60, communities=4, posts=150, days=3, seed=11)
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def world(ctx: Context) -> Context:
    seed(ctx.conn, WORLD)
    fan_out_everything(ctx)
    return ctx


@pytest.fixture
def client(world: Context) -> Iterator[feedctl.Client]:
    with feedctl.Client(world.settings, pool_size=4) as opened:
        yield opened


def ids(ctx: Context, table: str) -> list[int]:
    query = {
        "users": "SELECT id FROM users ORDER BY id",
        "communities": "SELECT id FROM communities ORDER BY id",
    }
    return [int(row[0]) for row in ctx.conn.execute(query[table])]


def walk(read: Any, feed_id: int) -> list[tuple[int, float]]:
    """Every item of a feed, page by page, through `read(id, limit, cursor)`."""
    seen: list[tuple[int, float]] = []
    cursor = None
    while True:
        page: FeedPage = read(feed_id, 7, cursor)
        seen.extend((item.post_id, item.score) for item in page.items)
        cursor = page.next_cursor
        if cursor is None:
            return seen


def reference_walk(ctx: Context, feed: FeedRef) -> list[tuple[int, float]]:
    reader = FeedReader.for_settings(ctx.conn, ctx.cache, ctx.settings)
    return walk(lambda i, limit, cursor: reader.page(FeedRef(feed.kind, i), limit, cursor), feed.id)


def test_the_package_exports_the_clients_lazily() -> None:
    from feedctl.client import AsyncClient, Client

    assert feedctl.Client is Client
    assert feedctl.AsyncClient is AsyncClient
    with pytest.raises(AttributeError):
        _ = feedctl.NoSuchThing  # type: ignore[attr-defined]


@pytest.mark.redis_cluster_too  # once on one server, once on a Redis Cluster
def test_pages_equal_the_readers_pages(world: Context, client: feedctl.Client) -> None:
    for user_id in ids(world, "users")[:5]:
        assert walk(client.user_feed, user_id) == reference_walk(world, FeedRef("user", user_id))
    for community_id in ids(world, "communities"):
        expected = reference_walk(world, FeedRef("community", community_id))
        assert expected
        assert walk(client.community_feed, community_id) == expected
        assert client.community_feed(community_id).source == "cache"  # filled by the walks


def test_many_threads_read_through_one_client(world: Context, client: feedctl.Client) -> None:
    users = ids(world, "users")[:16]
    expected = {u: reference_walk(world, FeedRef("user", u)) for u in users}
    start = threading.Barrier(16)

    def read_all(user_id: int) -> list[tuple[int, float]]:
        start.wait()
        walks = [walk(client.user_feed, user_id) for _ in range(3)]
        assert walks[0] == walks[1] == walks[2]
        return walks[0]

    with ThreadPoolExecutor(16) as threads:  # 16 readers over a pool of 4 connections
        results = dict(zip(users, threads.map(read_all, users), strict=True))
    assert results == expected


@pytest.mark.redis_cluster_too
def test_many_tasks_read_through_one_async_client(world: Context) -> None:
    users = ids(world, "users")[:20]
    communities = ids(world, "communities")
    expected_users = {u: reference_walk(world, FeedRef("user", u)) for u in users}
    expected_communities = {c: reference_walk(world, FeedRef("community", c)) for c in communities}

    async def read_walk(read: Any, feed_id: int) -> tuple[int, list[tuple[int, float]]]:
        seen: list[tuple[int, float]] = []
        cursor = None
        while True:
            page = await read(feed_id, 7, cursor)
            seen.extend((item.post_id, item.score) for item in page.items)
            cursor = page.next_cursor
            if cursor is None:
                return feed_id, seen

    async def main() -> tuple[dict[int, Any], dict[int, Any]]:
        async with feedctl.AsyncClient(world.settings, pool_size=4) as feeds:
            user_walks = await asyncio.gather(*(read_walk(feeds.user_feed, u) for u in users * 2))
            community_walks = await asyncio.gather(
                *(read_walk(feeds.community_feed, c) for c in communities)
            )
            assert (await feeds.readiness()).ready
            first = await feeds.page(FeedRef("user", users[0]), 7)
            assert [(i.post_id, i.score) for i in first.items] == expected_users[users[0]][:7]
            community = communities[0]
            rebuilt = await feeds.rebuild_community(community)
            assert rebuilt.redis_failures == 0
            await feeds.mark_for_repair("community", [community])
            whole = await feeds.rebuild_all()
            assert whole.users == len(ids(world, "users"))
        assert feeds.sync.closed
        return dict(user_walks), dict(community_walks)

    got_users, got_communities = asyncio.run(main())
    assert got_users == expected_users
    assert got_communities == expected_communities


def test_unknown_ids_bad_cursors_and_limits_are_feedctl_errors(client: feedctl.Client) -> None:
    with pytest.raises(NotFoundError, match="user 999999 does not exist"):
        client.user_feed(999_999)
    with pytest.raises(NotFoundError, match="community 999999 does not exist"):
        client.community_feed(999_999)
    with pytest.raises(BadInputError, match="limit"):
        client.user_feed(1, limit=0)
    with pytest.raises(CursorError):
        client.user_feed(1, cursor="not-a-cursor")
    with pytest.raises(BadInputError, match="kind"):
        client.mark_for_repair("group", [1])  # type: ignore[arg-type]


def test_rebuilds_and_repair_marks(world: Context, client: feedctl.Client) -> None:
    user_id = ids(world, "users")[0]
    community_id = ids(world, "communities")[0]
    before = walk(client.user_feed, user_id)
    world.conn.execute("DELETE FROM feed_entry WHERE user_id = %s", (user_id,))
    report = client.rebuild_user(user_id)
    assert report.users == 1 and report.entries_added == len(before)
    assert walk(client.user_feed, user_id) == before
    report = client.rebuild_community(community_id)
    assert report.redis_failures == 0
    with pytest.raises(NotFoundError):
        client.rebuild_user(999_999)
    client.mark_for_repair("user", [user_id, user_id + 1], "the app saw a stale page")
    marked = world.conn.execute(
        "SELECT feed_kind, feed_id, reason FROM feed_repair ORDER BY feed_id"
    ).fetchall()
    assert marked == [
        ("user", user_id, "the app saw a stale page"),
        ("user", user_id + 1, "the app saw a stale page"),
    ]
    whole = client.rebuild_all()
    assert whole.users == len(ids(world, "users")) and not whole.stopped


def test_redis_down_still_serves_from_postgresql_and_counts_failures(
    world: Context, own_redis: Any
) -> None:
    failures: list[int] = []
    settings = Settings(**{**_fields(world.settings), "redis_url": own_redis.url})
    user_id = ids(world, "users")[0]
    expected = reference_walk(world, FeedRef("user", user_id))
    with feedctl.Client(settings, on_redis_failure=lambda: failures.append(1)) as client:
        assert walk(client.user_feed, user_id) == expected
        assert client.user_feed(user_id).source == "cache"
        own_redis.stop()
        assert walk(client.user_feed, user_id) == expected
        assert client.user_feed(user_id).source == "database"
        assert failures
        readiness = client.readiness()
        assert readiness.postgres and not readiness.redis and not readiness.ready
        own_redis.start()


def test_postgresql_down_is_service_unavailable(settings: Settings) -> None:
    down = Settings(**{**_fields(settings), "database_url": "postgresql://127.0.0.1:9/nothing"})
    with feedctl.Client(down, timeout=0.5) as client:
        with pytest.raises(ServiceUnavailableError, match="PostgreSQL"):
            client.user_feed(1)
        assert not client.readiness().postgres


def _fields(settings: Settings) -> dict[str, Any]:
    return {
        name: getattr(settings, name)
        for name in settings.__dataclass_fields__
        if name != "config_file"
    }


def readme_lifespan_example() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- lifespan example -->\s*```python\n(.*?)```", text, re.DOTALL)
    assert match, "README.md has no lifespan example"
    return match.group(1)


def test_the_readme_lifespan_example_runs(
    world: Context, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = world.settings
    monkeypatch.setenv("FEEDCTL_DATABASE_URL", world.database_url)
    monkeypatch.setenv("FEEDCTL_REDIS_URL", str(settings.redis_url))
    monkeypatch.setenv("FEEDCTL_REDIS_KEY_PREFIX", settings.redis_key_prefix)
    monkeypatch.setenv("FEEDCTL_FEED_CAP", str(settings.feed_cap))
    monkeypatch.setenv("FEEDCTL_FEED_RETENTION", settings.feed_retention)
    with warnings.catch_warnings():  # Starlette's notice that it would prefer httpx2
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(readme_lifespan_example(), str(README), "exec"), namespace)
    user_id = ids(world, "users")[0]
    with TestClient(namespace["app"]) as http:
        response = http.get(f"/home/{user_id}")
        assert response.status_code == 200
    expected = reference_walk(world, FeedRef("user", user_id))[:20]
    assert [(i["post_id"], i["score"]) for i in response.json()["items"]] == expected


def test_a_closed_client_says_so(settings: Settings) -> None:
    client = feedctl.Client(settings)
    client.close()
    client.close()  # twice is fine
    assert client.closed
    with pytest.raises((ServiceUnavailableError, psycopg.Error, RuntimeError)):
        client.user_feed(1)


def test_malformed_urls_are_config_errors(settings: Settings) -> None:
    from feedctl.errors import ConfigError

    with pytest.raises(ConfigError, match="database URL is malformed"):
        feedctl.Client(settings, database_url="postgresql://[nothing")
    with pytest.raises(ConfigError, match="Redis URL is malformed"):
        feedctl.Client(settings, redis_url="nonsense://x")


def test_a_background_rebuild_of_every_feed_reports_a_lock_held_elsewhere(
    world: Context, client: feedctl.Client
) -> None:
    from feedctl.api.rebuilds import RebuildRuns
    from feedctl.db.locks import advisory_lock
    from feedctl.errors import LockedError
    from feedctl.pipelines.cache.rebuild import LOCK_NAME

    runs = RebuildRuns()
    with (
        psycopg.connect(world.database_url, autocommit=True) as other,
        advisory_lock(other, LOCK_NAME),
    ):
        record = runs.start_all(client, resume=False)
        runs.stop(30)  # waits for the thread, which failed at once
    assert record.status == "failed"
    assert record.error == "another rebuild of every feed is running (it holds the lock)"
    assert runs.get(record.id) is record
    with pytest.raises(LockedError, match="shutting down"):
        runs.start_all(client, resume=False)
