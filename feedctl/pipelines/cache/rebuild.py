"""Rebuild: recompute users' feeds from memberships and scored live posts within the retention.

Each chunk of users is rewritten in PostgreSQL by one statement in one transaction (a
reader sees the old feeds or the new ones), then the cached copies are swapped in, each
atomically (docs/decisions/0017). Rebuilding twice changes nothing the second time.
`rebuild_all` records its progress after every chunk, so `resume` continues after the
last chunk whose rows and cached copies were both written.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Sequence, Sized
from typing import Any, Literal

import psycopg
import psycopg.errors

from feedctl.cache.keys import community_feed, user_feed
from feedctl.context import Context
from feedctl.db.locks import advisory_lock
from feedctl.db.owners import require_user
from feedctl.db.retry import in_transaction_retrying
from feedctl.db.sql_blocks import query
from feedctl.errors import BadInputError
from feedctl.faults import checkpoint
from feedctl.pipelines.cache import repair_marks
from feedctl.pipelines.cache.warm import all_user_ids, community_members
from feedctl.pipelines.cache.writes import CacheReport, chunked, write_cached_tops
from feedctl.progress import SILENT, Progress, stopping

PHASE = "rebuilding (users)"
RUN_NAME = "all"
LOCK_NAME = "feedctl.rebuild.all"
USERS_PER_CHUNK = 200
DEFAULT_SAMPLE = 10


@dataclasses.dataclass(frozen=True)
class EntryChange:
    """One feed entry a rebuild changes (a dry run shows a sample of them)."""

    user_id: int
    post_id: int
    score_before: float | None  # None: the entry is added
    score_after: float | None  # None: the entry is removed

    @property
    def change(self) -> Literal["add", "remove", "update"]:
        if self.score_before is None:
            return "add"
        return "remove" if self.score_after is None else "update"


@dataclasses.dataclass
class RebuildReport:
    """What a rebuild did (or, in a dry run, would do)."""

    users: int = 0
    entries_before: int = 0  # feed_entry rows of those users before
    entries_after: int = 0  # ... and after
    entries_removed: int = 0
    entries_added: int = 0
    entries_updated: int = 0
    cached_feeds_rewritten: int = 0
    cached_entries_before: int = 0  # members of those cached copies before (sentinels aside)
    cached_entries_after: int = 0
    uncached_feeds: int = 0  # left uncached: a read or a warm fills them
    redis_failures: int = 0  # feeds whose cached copy could not be written (marked for repair)
    resumed_after_user: int | None = None
    stopped: bool = False  # a stop request ended the run early: run again with --resume
    dry_run: bool = False
    sample: list[EntryChange] = dataclasses.field(default_factory=list)


def rebuild_user(ctx: Context, user_id: int, *, dry_run: bool = False) -> RebuildReport:
    """Rebuild one user's feed (the user must exist)."""
    require_user(ctx.conn, user_id)
    return rebuild_users(ctx, [user_id], dry_run=dry_run)


def rebuild_community(
    ctx: Context,
    community_id: int,
    *,
    dry_run: bool = False,
    progress: Progress = SILENT,
    stop: threading.Event | None = None,
    chunk_size: int = USERS_PER_CHUNK,
) -> RebuildReport:
    """Rebuild every member's feed, then swap in the community's own cached feed."""
    members = community_members(ctx, community_id)
    progress.phase(PHASE, members.total)
    report = _rebuild_chunks(
        ctx, members.ids, dry_run=dry_run, progress=progress, stop=stop, chunk_size=chunk_size
    )
    if not dry_run and not report.stopped:
        _rewrite_cached(ctx, "community", [community_id], report)
    return report


def rebuild_users(
    ctx: Context,
    ids: Iterable[int],
    *,
    dry_run: bool = False,
    progress: Progress = SILENT,
    stop: threading.Event | None = None,
    chunk_size: int = USERS_PER_CHUNK,
) -> RebuildReport:
    """Rebuild these users' feeds chunk by chunk; `stop` ends the run between chunks."""
    progress.phase(PHASE, len(ids) if isinstance(ids, Sized) else None)
    return _rebuild_chunks(
        ctx, ids, dry_run=dry_run, progress=progress, stop=stop, chunk_size=chunk_size
    )


def _rebuild_chunks(
    ctx: Context,
    ids: Iterable[int],
    *,
    dry_run: bool,
    progress: Progress,
    stop: threading.Event | None,
    chunk_size: int,
    after_chunk: Callable[[list[int]], None] | None = None,
) -> RebuildReport:
    _check_chunk_size(chunk_size)
    report = RebuildReport(dry_run=dry_run)
    for chunk in chunked(ids, chunk_size):
        if stopping(stop):
            report.stopped = True
            break
        if dry_run:
            _plan_chunk(ctx, chunk, report)
        else:
            _apply_chunk(ctx, chunk, report)
            checkpoint("rebuild.after_commit")
            started = repair_marks.database_now(ctx.conn)
            _rewrite_cached(ctx, "user", chunk, report)
            repair_marks.unmark(ctx.conn, "user", chunk, started)  # a failure since stays
            checkpoint("rebuild.after_cache")
            if after_chunk:
                after_chunk(chunk)
        report.users += len(chunk)
        progress.advance(len(chunk))
    return report


def rebuild_all(
    ctx: Context,
    *,
    dry_run: bool = False,
    resume: bool = False,
    progress: Progress = SILENT,
    stop: threading.Event | None = None,
    chunk_size: int = USERS_PER_CHUNK,
) -> RebuildReport:
    """Rebuild every user's feed in id order, recording progress after each chunk.

    With `resume`, continue after the last chunk an unfinished run completed (or start
    from the first user when there is none). One run at a time (else LockedError, exit 75).
    `stop` ends the run between chunks (then `report.stopped`).
    """
    _check_chunk_size(chunk_size)
    conn = ctx.conn
    with advisory_lock(conn, LOCK_NAME):
        after = _resume_point(ctx) if resume else 0
        if not dry_run and after == 0:
            conn.execute(query("rebuild_run_start"), {"name": RUN_NAME, "cap": ctx.cap})
        row = conn.execute(query("count_users_after"), {"after": after}).fetchone()
        progress.phase(PHASE, int(row[0]) if row else 0)
        ids = all_user_ids(conn, after)
        report = _rebuild_chunks(
            ctx,
            ids,
            dry_run=dry_run,
            progress=progress,
            stop=stop,
            after_chunk=None if dry_run else _record_chunk(conn),
            chunk_size=chunk_size,
        )
        report.resumed_after_user = after if resume else None
        if not dry_run and not report.stopped:
            conn.execute(query("rebuild_run_finish"), {"name": RUN_NAME})
            _rewrite_all_cached_communities(ctx, report)
    return report


def _check_chunk_size(size: int) -> None:
    if size < 1:
        raise BadInputError(f"the chunk size must be at least 1, got {size}")


def _resume_point(ctx: Context) -> int:
    row = ctx.conn.execute(query("rebuild_run_unfinished"), {"name": RUN_NAME}).fetchone()
    if row is None:
        return 0
    cap, last_user_id = int(row[0]), int(row[1])
    if cap != ctx.cap:
        raise BadInputError(
            f"the unfinished rebuild used cap {cap}, not {ctx.cap}: resume it with "
            f"--cap {cap}, or start again without --resume"
        )
    return last_user_id


def _record_chunk(conn: psycopg.Connection[Any]) -> Callable[[list[int]], None]:
    def record(chunk: list[int]) -> None:
        params = {"name": RUN_NAME, "last_user_id": max(chunk), "users": len(chunk)}
        conn.execute(query("rebuild_run_advance"), params)

    return record


def _apply_chunk(ctx: Context, chunk: list[int], report: RebuildReport) -> None:
    """Rewrite the chunk's feeds in one transaction; retried after a deadlock. The feeds
    are marked for repair in it too, until their cached copies are rewritten: a crash in
    between leaves them marked, and no page of theirs is served from Redis alone
    (docs/decisions/0029)."""

    def apply() -> tuple[Any, ...] | None:
        params = {"ids": chunk, "since": ctx.retained_since()}
        row = ctx.conn.execute(query("rebuild_user_feeds_apply"), params).fetchone()
        repair_marks.mark(ctx.conn, "user", chunk, "rebuild: cached copy not rewritten yet")
        return row

    row = in_transaction_retrying(ctx.conn, apply, what="rebuild chunk")
    assert row is not None
    _count(report, row)


def _plan_chunk(ctx: Context, chunk: list[int], report: RebuildReport) -> None:
    wanted = max(DEFAULT_SAMPLE - len(report.sample), 0)
    params = {"ids": chunk, "since": ctx.retained_since(), "sample": wanted}
    rows = ctx.conn.execute(query("rebuild_user_feeds_plan"), params).fetchall()
    _count(report, rows[0])
    report.sample.extend(EntryChange(*row[5:9]) for row in rows if row[5] is not None)


def _count(report: RebuildReport, row: Sequence[Any]) -> None:
    report.entries_before += int(row[0])
    report.entries_after += int(row[1])
    report.entries_removed += int(row[2])
    report.entries_added += int(row[3])
    report.entries_updated += int(row[4])


def _rewrite_cached(
    ctx: Context, kind: Literal["user", "community"], ids: list[int], report: RebuildReport
) -> None:
    """Swap in the cached copies of these feeds that are cached; leave the rest uncached."""
    feeds = [user_feed(i) if kind == "user" else community_feed(i) for i in ids]
    with repair_marks.marked_on_failure(ctx.conn, feeds, "rebuild failed", report) as asked:
        before = ctx.cache.sizes([f.key(ctx.prefix) for f in feeds])
    if asked.failed:
        return
    counts = CacheReport()
    written = write_cached_tops(ctx, feeds, counts, "rebuild failed")
    report.redis_failures += counts.redis_failures
    for feed, size in zip(feeds, before, strict=True):
        if feed in written:
            report.cached_feeds_rewritten += 1
            report.cached_entries_before += size or 0
            report.cached_entries_after += written[feed]
        elif not counts.redis_failures:
            report.uncached_feeds += 1


def _rewrite_all_cached_communities(ctx: Context, report: RebuildReport) -> None:
    """Community feeds are post_score itself; only their cached copies need swapping in."""
    ids = [row[0] for row in ctx.conn.execute(query("all_community_ids"))]
    for chunk in chunked(ids, USERS_PER_CHUNK):
        _rewrite_cached(ctx, "community", chunk, report)
