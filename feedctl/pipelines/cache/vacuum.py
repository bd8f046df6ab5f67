"""Vacuum: free what the cache holds for nobody, and forget score history no walk needs.

Walks the keys under `PREFIX feed:` with SCAN (never KEYS), a batch at a time, and drops:
the feeds of users inactive for longer than the window, orphan keys (not a feed key, or
the feed of a user or community that no longer exists), malformed keys (not a sorted set,
or without a sentinel at -inf); and trims feeds holding more than the cap back to it
(docs/decisions/0019). Then deletes post_score_change rows older than any cursor can be.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from feedctl.cache.feeds import KeyFacts
from feedctl.cache.keys import FeedRef, parse_feed_key
from feedctl.context import Context
from feedctl.db.sql_blocks import query
from feedctl.errors import BadInputError
from feedctl.progress import SILENT, Progress, stopping
from feedctl.read.cursor import CURSOR_MAX_AGE

HISTORY_MARGIN = timedelta(hours=1)  # kept beyond the cursor lifetime, for slow writers
_PRUNE_BATCH = 10_000

Verdict = Literal["keep", "inactive", "orphan", "malformed", "over_cap"]


@dataclasses.dataclass
class VacuumReport:
    keys_scanned: int = 0
    keys_dropped: int = 0
    inactive_feeds_dropped: int = 0
    orphan_keys_dropped: int = 0
    malformed_keys_dropped: int = 0
    stray_details_dropped: int = 0  # details hashes of feeds no longer cached
    feeds_trimmed: int = 0
    members_freed: int = 0  # sentinels aside
    bytes_freed: int = 0  # from MEMORY USAGE (sampled, so an estimate for large sets)
    score_changes_pruned: int = 0
    stopped: bool = False  # a stop request ended the walk early (history not pruned)
    dry_run: bool = False


@dataclasses.dataclass(frozen=True)
class Owners:
    """What PostgreSQL says about the owners of a batch of feed keys."""

    active_users: set[int]
    existing_users: set[int]
    existing_communities: set[int]


def judge(facts: KeyFacts, feed: FeedRef | None, owners: Owners, cap: int) -> Verdict:
    """What to do with one key under `PREFIX feed:`."""
    if feed is None:
        return "orphan"
    if not facts.sound:
        return "malformed"
    if feed.kind == "user":
        if feed.id not in owners.existing_users:
            return "orphan"
        if feed.id not in owners.active_users:
            return "inactive"
    elif feed.id not in owners.existing_communities:
        return "orphan"
    if facts.members - 1 > cap:
        return "over_cap"
    return "keep"


def vacuum(
    ctx: Context,
    inactive_for: timedelta,
    *,
    dry_run: bool = False,
    progress: Progress = SILENT,
    stop: threading.Event | None = None,
) -> VacuumReport:
    """Free caches nobody needs; with `dry_run`, only count what would be freed.
    A set `stop` ends the walk between batches of keys."""
    if inactive_for <= timedelta(0):
        raise BadInputError("the inactivity window must be longer than 0")
    report = VacuumReport(dry_run=dry_run)
    since = datetime.now(UTC) - inactive_for
    progress.phase("vacuuming (keys)", None)
    for keys in ctx.cache.scan_keys():
        if stopping(stop):
            report.stopped = True
            return report
        report.keys_scanned += len(keys)
        _vacuum_batch(ctx, keys, since, report)
        progress.advance(len(keys))
    for gone in ctx.cache.scan_stray_details():
        if stopping(stop):
            report.stopped = True
            return report
        report.stray_details_dropped += len(gone)
        if not dry_run:
            ctx.cache.drop_details(gone)
    _prune_history(ctx, report)
    return report


def _vacuum_batch(ctx: Context, keys: Sequence[str], since: datetime, report: VacuumReport) -> None:
    facts = ctx.cache.inspect(keys)
    feeds = [parse_feed_key(ctx.prefix, key) for key in keys]
    owners = _owners(ctx, [f for f in feeds if f is not None], since)
    drop: list[KeyFacts] = []
    trim: list[KeyFacts] = []
    for fact, feed in zip(facts, feeds, strict=True):
        verdict = judge(fact, feed, owners, ctx.cap)
        if verdict == "keep" or fact.type == "none":  # gone since the scan
            continue
        if verdict == "over_cap":
            trim.append(fact)
            continue
        drop.append(fact)
        if verdict == "inactive":
            report.inactive_feeds_dropped += 1
        elif verdict == "orphan":
            report.orphan_keys_dropped += 1
        else:
            report.malformed_keys_dropped += 1
    _drop(ctx, drop, report)
    _trim(ctx, trim, report)


def _owners(ctx: Context, feeds: Sequence[FeedRef], since: datetime) -> Owners:
    users = [f.id for f in feeds if f.kind == "user"]
    communities = [f.id for f in feeds if f.kind == "community"]
    activity = ctx.conn.execute(query("user_activity"), {"ids": users, "since": since}).fetchall()
    existing = ctx.conn.execute(query("existing_community_ids"), {"ids": communities})
    return Owners(
        active_users={row[0] for row in activity if row[1]},
        existing_users={row[0] for row in activity},
        existing_communities={row[0] for row in existing},
    )


def _drop(ctx: Context, facts: Sequence[KeyFacts], report: VacuumReport) -> None:
    if not facts:
        return
    report.keys_dropped += len(facts)
    report.members_freed += sum(max(f.members - 1, 0) if f.sound else f.members for f in facts)
    report.bytes_freed += sum(f.bytes for f in facts)
    if not report.dry_run:
        ctx.cache.unlink([f.key for f in facts])


def _trim(ctx: Context, facts: Sequence[KeyFacts], report: VacuumReport) -> None:
    if not facts:
        return
    report.feeds_trimmed += len(facts)
    excess = [f.members - 1 - ctx.cap for f in facts]
    report.members_freed += sum(excess)
    if report.dry_run:
        report.bytes_freed += sum(
            f.bytes * extra // max(f.members, 1) for f, extra in zip(facts, excess, strict=True)
        )
        return
    ctx.cache.trim([f.key for f in facts])
    after = {f.key: f.bytes for f in ctx.cache.inspect([f.key for f in facts])}
    report.bytes_freed += sum(max(f.bytes - after.get(f.key, 0), 0) for f in facts)


def _prune_history(ctx: Context, report: VacuumReport) -> None:
    """Score changes older than the cursor lifetime (and a margin) serve no walk."""
    before = datetime.now(UTC) - CURSOR_MAX_AGE - HISTORY_MARGIN
    if report.dry_run:
        found = ctx.conn.execute(query("count_prunable_score_changes"), {"before": before})
        row = found.fetchone()
        report.score_changes_pruned = int(row[0]) if row else 0
        return
    while True:
        params = {"before": before, "limit": _PRUNE_BATCH}
        row = ctx.conn.execute(query("prune_score_changes"), params).fetchone()
        pruned = int(row[0]) if row else 0
        report.score_changes_pruned += pruned
        if pruned < _PRUNE_BATCH:
            return
