"""Verify: compare a random sample of cached feeds with PostgreSQL, member by member.

What a cached feed must be (docs/decisions/0003 and 0018): one sentinel at -inf; with `c`,
exactly the whole feed; with `t`, exactly the top of the feed for as many members as it
holds, and never more than the cap; every member a post id with that post's score.
A feed that disagrees is compared again after a moment: a write in flight (fan-out and rank
write Redis just after their commit) settles, a real disagreement stays and is reported.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from feedctl.cache.feeds import COMPLETE, TRUNCATED, CachedFeed
from feedctl.cache.keys import KINDS, FeedRef, parse_feed_key
from feedctl.context import Context
from feedctl.db.feed_tops import FeedTop, load_tops
from feedctl.db.sql_blocks import query
from feedctl.errors import BadInputError
from feedctl.pipelines.cache import repair_marks
from feedctl.progress import SILENT, Progress, stopping

SETTLE_SECONDS = 0.5
DEFAULT_SAMPLE = 100
COMPARE_CHUNK = 100  # feeds compared at once (each up to cap entries on either side)
MAX_LISTED = 10_000  # mismatches kept in the report; all are counted
_OWNER_QUERY = {"user": "existing_user_ids", "community": "existing_community_ids"}


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """One way a cached feed disagrees with PostgreSQL."""

    key: str
    kind: str  # missing | extra | score | sentinel | over_cap | malformed | orphan | details
    post_id: int | None = None
    cached_score: float | None = None
    database_score: float | None = None
    detail: str = ""


@dataclasses.dataclass
class VerifyReport:
    keys_scanned: int = 0
    feeds_compared: int = 0
    feeds_matching: int = 0
    feeds_mismatched: int = 0
    feeds_settled: int = 0  # disagreed at first, agreed when compared again (writes in flight)
    mismatches_found: int = 0
    feeds_marked_for_repair: int = 0
    stopped: bool = False  # a stop request ended the run before every feed was compared
    mismatches: list[Mismatch] = dataclasses.field(default_factory=list)


def compare_feed(
    key: str, cached: CachedFeed, top: Sequence[tuple[int, float]], longer: bool, cap: int
) -> list[Mismatch]:
    """Every disagreement between a cached feed and its PostgreSQL top `cap` entries.

    `top` is the feed's best `cap` entries, best first; `longer` says the feed has more.
    """
    if cached.wrong_type:
        return [Mismatch(key, "malformed", detail="the key is not a sorted set")]
    found = [
        Mismatch(key, "malformed", detail=f"member {member!r} is not a post id")
        for member in cached.foreign
    ]
    held = len(cached.entries)
    if len(cached.sentinels) != 1:
        found.append(Mismatch(key, "sentinel", detail=f"{len(cached.sentinels)} sentinels"))
        expected = list(top)
    elif cached.sentinels[0] == COMPLETE:
        if longer:
            detail = f"marked complete, but the feed has more than {cap} entries"
            found.append(Mismatch(key, "sentinel", detail=detail))
        expected = list(top)
    else:
        assert cached.sentinels[0] == TRUNCATED
        expected = list(top[:held])
    if held > cap:
        found.append(Mismatch(key, "over_cap", detail=f"{held} entries, cap {cap}"))
    found.extend(_member_mismatches(key, cached.entries, expected))
    return found


def _member_mismatches(
    key: str, entries: Sequence[tuple[int, float]], expected: Sequence[tuple[int, float]]
) -> list[Mismatch]:
    cached = dict(entries)
    wanted = dict(expected)
    found = []
    for post_id, score in expected:
        if post_id not in cached:
            found.append(Mismatch(key, "missing", post_id, None, score))
        elif cached[post_id] != score:
            found.append(Mismatch(key, "score", post_id, cached[post_id], score))
    for post_id, score in entries:
        if post_id not in wanted:
            found.append(Mismatch(key, "extra", post_id, score, None))
    return found


def details_mismatches(
    key: str,
    entries: Sequence[tuple[int, float]],
    cached: dict[int, str],
    database: dict[int, str],
) -> list[Mismatch]:
    """Details a cached feed keeps that are wrong, or kept for a post it does not hold
    (details missing for a post it holds are no mismatch: such a page is checked against
    PostgreSQL, docs/decisions/0029)."""
    held = {post_id for post_id, _ in entries}
    found = []
    for post_id, text in sorted(cached.items()):
        if post_id not in held:
            found.append(Mismatch(key, "details", post_id, detail="kept for a post not held"))
        elif database.get(post_id) != text:
            detail = f"cached {text!r}, database {database.get(post_id)!r}"
            found.append(Mismatch(key, "details", post_id, detail=detail))
    return found


def sample_keys(
    ctx: Context,
    size: int,
    rng: random.Random,
    *,
    progress: Progress = SILENT,
    stop: threading.Event | None = None,
) -> tuple[list[str], int]:
    """A uniform sample of up to `size` feed keys (reservoir sampling over one SCAN);
    a set `stop` ends the scan early (the sample is then of the keys seen so far)."""
    chosen: list[str] = []
    seen = 0
    progress.phase("sampling (keys)", None)
    for batch in ctx.cache.scan_keys():
        if stopping(stop):
            break
        for key in batch:
            seen += 1
            if len(chosen) < size:
                chosen.append(key)
            else:
                slot = rng.randrange(seen)
                if slot < size:
                    chosen[slot] = key
        progress.advance(len(batch))
    return chosen, seen


def verify(
    ctx: Context,
    sample: int,
    *,
    mark: bool = False,
    seed: int | None = None,
    settle_seconds: float = SETTLE_SECONDS,
    progress: Progress = SILENT,
    stop: threading.Event | None = None,
) -> VerifyReport:
    """Compare `sample` random cached feeds with PostgreSQL and report every mismatch
    (the first MAX_LISTED in the report's list; `mismatches_found` counts them all).

    A set `stop` ends the run between batches of keys (nothing is compared) or of compared
    feeds (what was compared by then is reported, and marked with `mark`).
    """
    if sample < 1:
        raise BadInputError(f"the sample size must be at least 1, got {sample}")
    report = VerifyReport()
    rng = random.Random(seed)
    keys, report.keys_scanned = sample_keys(ctx, sample, rng, progress=progress, stop=stop)
    if stopping(stop):
        report.stopped = True
        return report
    disagreeing: list[str] = []
    progress.phase("comparing (feeds)", len(keys))
    for chunk in _chunks(keys):
        if stopping(stop):
            report.stopped = True
            break
        found = compare_keys(ctx, chunk)
        progress.advance(len(chunk))
        report.feeds_compared += len(found)
        disagreeing.extend(key for key, mismatches in found.items() if mismatches)
    if disagreeing and settle_seconds > 0:
        time.sleep(settle_seconds)
    lasting: list[str] = []
    for chunk in _chunks(sorted(disagreeing)):
        for key, mismatches in compare_keys(ctx, chunk).items():
            if mismatches:
                lasting.append(key)
                report.mismatches_found += len(mismatches)
                report.mismatches.extend(mismatches[: MAX_LISTED - len(report.mismatches)])
    report.feeds_settled = len(disagreeing) - len(lasting)
    report.feeds_mismatched = len(lasting)
    report.feeds_matching = report.feeds_compared - report.feeds_mismatched
    if mark:
        feeds = [f for f in (parse_feed_key(ctx.prefix, key) for key in lasting) if f]
        repair_marks.mark_feeds(ctx.conn, feeds, "verify found a mismatch")
        report.feeds_marked_for_repair = len(feeds)
    return report


def _chunks(keys: Sequence[str]) -> list[Sequence[str]]:
    return [keys[start : start + COMPARE_CHUNK] for start in range(0, len(keys), COMPARE_CHUNK)]


def compare_keys(ctx: Context, keys: Sequence[str]) -> dict[str, list[Mismatch]]:
    """Mismatches of each key that is still there (a key gone since the scan is left out)."""
    feeds = {key: parse_feed_key(ctx.prefix, key) for key in keys}
    cached = dict(zip(keys, ctx.cache.whole(keys), strict=True))
    details = dict(zip(keys, ctx.cache.details(keys), strict=True))
    tops = _tops(ctx, [f for f in feeds.values() if f is not None])
    posts = sorted({post_id for kept in details.values() for post_id in kept})
    rows = ctx.conn.execute(query("post_details"), {"ids": posts}).fetchall() if posts else []
    database = {post_id: text for post_id, text in rows}
    result: dict[str, list[Mismatch]] = {}
    for key in keys:
        held = cached[key]
        if held is None:
            continue
        feed = feeds[key]
        if feed is None:
            result[key] = [Mismatch(key, "orphan", detail="not a feed key")]
        elif feed not in tops:
            result[key] = [Mismatch(key, "orphan", detail=f"no {feed.kind} {feed.id}")]
        else:
            top = tops[feed]
            result[key] = compare_feed(key, held, top.entries, top.truncated, ctx.cap)
            result[key] += details_mismatches(key, held.entries, details[key], database)
    return result


def _tops(ctx: Context, feeds: Sequence[FeedRef]) -> dict[FeedRef, FeedTop]:
    """The top cap entries of each feed whose owner exists."""
    found: dict[FeedRef, FeedTop] = {}
    for kind in KINDS:
        ids = sorted({f.id for f in feeds if f.kind == kind})
        if not ids:
            continue
        existing = _existing(ctx.conn, kind, ids)
        for top in load_tops(
            ctx.conn, kind, [i for i in ids if i in existing], ctx.cap, ctx.retention
        ):
            found[top.feed] = top
    return found


def _existing(conn: psycopg.Connection[Any], kind: str, ids: list[int]) -> set[int]:
    return {row[0] for row in conn.execute(query(_OWNER_QUERY[kind]), {"ids": ids})}
