"""The whole pipeline once, on whatever servers the context has: the `make demo` path."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from feedctl.context import Context
from feedctl.db import migrations
from feedctl.db.sql_blocks import query
from feedctl.pipelines.cache import warm as cache_warm
from feedctl.pipelines.cache import writes as cache_writes
from feedctl.pipelines.fanout.run import FanoutReport, run_fanout
from feedctl.pipelines.ranking.nightly import RankReport, run_rank
from feedctl.read.pages import FeedPage, FeedReader
from feedctl.synth import SeedReport, SeedSpec, seed


@dataclasses.dataclass
class DemoReport:
    migrations_applied: list[str]
    seeded: SeedReport | None
    fanout: FanoutReport
    rank: RankReport
    warm: cache_writes.CacheReport
    user_id: int | None
    page: FeedPage | None


def run_demo(ctx: Context, spec: SeedSpec, step: Callable[[str], None]) -> DemoReport:
    """Migrate, seed (once), fan out, rank, warm active users, read one user's feed."""
    step("migrating")
    applied = migrations.upgrade(ctx.conn, feed_partitions=ctx.settings.feed_partitions)
    seeded = None
    row = ctx.conn.execute(query("count_posts")).fetchone()
    if not row or row[0] == 0:
        step("seeding a synthetic community")
        seeded = seed(ctx.conn, spec)
    step("fanning out")
    fanned = run_fanout(ctx)
    step("ranking")
    ranked = run_rank(ctx)
    step("warming the cache of active users")
    window = timedelta(days=ctx.settings.active_window_days)
    warmed = cache_warm.warm(ctx, "user", cache_warm.active_users(ctx, window).ids)
    since = datetime.now(UTC) - window
    found = ctx.conn.execute(query("busiest_active_user"), {"since": since}).fetchone()
    user_id = found[0] if found else None
    page = None
    if user_id is not None:
        reader = FeedReader.for_settings(ctx.conn, ctx.cache, ctx.settings)
        page = reader.user_feed(user_id, limit=10)
    return DemoReport(applied, seeded, fanned, ranked, warmed, user_id, page)
