"""Repair: rewrite the cached feeds marked for repair from PostgreSQL."""

from __future__ import annotations

import threading

from feedctl.cache.keys import KINDS, FeedRef
from feedctl.context import Context
from feedctl.pipelines.cache import repair_marks
from feedctl.pipelines.cache.writes import FEEDS_PER_CHUNK, CacheReport, write_tops
from feedctl.progress import SILENT, Progress, stopping


def repair(
    ctx: Context, *, progress: Progress = SILENT, stop: threading.Event | None = None
) -> CacheReport:
    """Rewrite every feed marked for repair from PostgreSQL (each swapped in atomically),
    then unmark it. A set `stop` ends the run between chunks of feeds.

    A mark set after the repair read PostgreSQL stays, so a miss during repair is not lost.
    """
    report = CacheReport()
    progress.phase("repairing (feeds)", repair_marks.count(ctx.conn))
    while True:
        if stopping(stop):
            report.stopped = True
            return report
        marks = repair_marks.marked(ctx.conn, FEEDS_PER_CHUNK)
        if not marks:
            return report
        started = repair_marks.database_now(ctx.conn)
        failures_before = report.redis_failures
        for kind in KINDS:
            ids = [feed_id for k, feed_id in marks if k == kind]
            if ids:
                report.feeds_considered += len(ids)
                write_tops(ctx, [FeedRef(kind, i) for i in ids], report, "repair failed")
        if report.redis_failures > failures_before:
            return report
        with ctx.conn.transaction():
            for kind in KINDS:
                ids = [feed_id for k, feed_id in marks if k == kind]
                repair_marks.unmark(ctx.conn, kind, ids, started)
        progress.advance(len(marks))
