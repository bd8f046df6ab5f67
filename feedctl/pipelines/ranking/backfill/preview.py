"""`rank backfill --dry-run`: what a backfill would change, with nothing written.

Every scored post is scored under the new heuristic into a session-private temporary
table; the shard's feed entries are compared with it chunk by chunk (read-only), and a
sample of feeds has its top items compared before and after. It also says which method
the backfill would write entries with (`swap` or `in_place`, by the same rule).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from feedctl.context import Context
from feedctl.db.sql_blocks import query
from feedctl.errors import BadInputError
from feedctl.pipelines.ranking import versions as heuristic_versions
from feedctl.pipelines.ranking.backfill.run import END, FIRST_USERS, START, next_chunk_users
from feedctl.pipelines.ranking.backfill.shards import Shard
from feedctl.pipelines.ranking.backfill.swap import METHODS, choose_method, feed_partitions
from feedctl.pipelines.ranking.backfill.throttle import Throttle
from feedctl.pipelines.ranking.scores import inputs_frame
from feedctl.progress import SILENT, Progress
from feedctl.rank.heuristic import Heuristic
from feedctl.rank.movement import summarize
from feedctl.rank.scoring import score_frame


@dataclasses.dataclass(frozen=True)
class PreviewOptions:
    shard: Shard = dataclasses.field(default_factory=Shard)
    sample_feeds: int = 200  # feeds whose top items are compared
    top: int = 20  # how many top items
    rate_limit: float | None = None  # rows read per second, at most
    chunk_rows: int = 20_000  # rows (posts, or feed entries) per chunk, about
    method: str = "auto"  # the method the backfill would be started with

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            choices = ", ".join(METHODS)
            raise BadInputError(f"--method must be one of {choices}, got {self.method!r}")
        if self.sample_feeds < 0:
            raise BadInputError(f"--sample-feeds must be 0 or more, got {self.sample_feeds}")
        if self.top < 1:
            raise BadInputError(f"--top must be at least 1, got {self.top}")
        if self.chunk_rows < 1:
            raise BadInputError("--chunk-rows must be at least 1")


@dataclasses.dataclass
class BackfillPreview:
    """What a backfill towards a heuristic would change (nothing is written)."""

    heuristic_version: str
    current_version: str | None
    shard: str
    posts: int = 0  # scored live posts
    posts_changed: int = 0  # whose score would change
    method: str = ""  # how the backfill would write entries: swap or in_place
    entries: int = 0  # feed entries of the shard's users
    entries_changed: int = 0  # whose score would change
    feeds_sampled: int = 0
    top: int = 20
    top_overlap_mean: float | None = None  # mean share of a feed's top items that stay
    top_overlap_min: float | None = None
    top_unchanged_share: float | None = None  # feeds whose top stays identical, in order
    stopped: bool = False
    seconds: float = 0.0
    dry_run: bool = True


def preview_backfill(
    ctx: Context,
    heuristic: Heuristic,
    options: PreviewOptions,
    *,
    stop: threading.Event | None = None,
    progress: Progress = SILENT,
) -> BackfillPreview:
    """Count what a backfill towards `heuristic` would change; write nothing."""
    started = time.perf_counter()
    stop = stop or threading.Event()
    found = heuristic_versions.current(ctx.conn)
    preview = BackfillPreview(
        heuristic_version=heuristic.version,
        current_version=found.heuristic.version if found else None,
        shard=str(options.shard),
        top=options.top,
    )
    throttle = Throttle(options.rate_limit, stop.wait)
    _score_posts(ctx, heuristic, options, preview, throttle, stop, progress)
    preview.method = choose_method(
        options.method,
        partitioned=bool(feed_partitions(ctx.conn)),
        changed=preview.posts_changed,
        total=preview.posts,
    )
    if not stop.is_set():
        _count_entries(ctx, options, preview, throttle, stop, progress)
    if not stop.is_set():
        _sample_tops(ctx, options, preview)
    preview.stopped = stop.is_set()
    preview.seconds = time.perf_counter() - started
    return preview


def _score_posts(
    ctx: Context,
    heuristic: Heuristic,
    options: PreviewOptions,
    preview: BackfillPreview,
    throttle: Throttle,
    stop: threading.Event,
    progress: Progress,
) -> None:
    conn = ctx.conn
    conn.execute(query("preview_create"))
    conn.execute(query("preview_clear"))
    counts = conn.execute(query("backfill_count_posts"), {"after": START}).fetchone()
    progress.phase("posts", int(counts[0]) if counts else None)
    after = START
    limit = throttle.chunk_rows(options.chunk_rows)
    while not stop.is_set():
        rows = conn.execute(query("backfill_post_inputs"), {"after": after, "limit": limit})
        inputs = inputs_frame(rows.fetchall())
        if inputs.is_empty():
            break
        scored = score_frame(inputs, heuristic)
        payload = scored.select("post_id", "score").write_csv(include_header=False)
        with conn.cursor() as cur, cur.copy(query("preview_copy")) as copy:
            copy.write(payload)
        after = int(scored["post_id"][-1])
        preview.posts += scored.height
        progress.advance(scored.height)
        throttle.pace(scored.height)
    conn.execute(query("preview_analyze"))
    row = conn.execute(query("preview_changed_posts")).fetchone()
    preview.posts_changed = int(row[0]) if row else 0


def _shard_params(options: PreviewOptions) -> dict[str, Any]:
    return {"shard": options.shard.index, "shard_count": options.shard.count}


def _count_entries(
    ctx: Context,
    options: PreviewOptions,
    preview: BackfillPreview,
    throttle: Throttle,
    stop: threading.Event,
    progress: Progress,
) -> None:
    conn = ctx.conn
    params = _shard_params(options)
    counts = conn.execute(query("backfill_shard_user_count"), {**params, "after": START})
    row = counts.fetchone()
    progress.phase("users", int(row[0]) if row else None)
    target = throttle.chunk_rows(options.chunk_rows)
    users, after = FIRST_USERS, START
    throttle.restart()
    while not stop.is_set():
        page = {**params, "after": after, "limit": users}
        ids = [r[0] for r in conn.execute(query("backfill_shard_users"), page)]
        upto = ids[-1] if ids else END
        with conn.transaction():
            conn.execute(query("rank_prefer_indexes"))
            found = conn.execute(
                query("preview_count_entries"), {**params, "after": after, "upto": upto}
            ).fetchone()
        entries, changed = (int(found[0]), int(found[1])) if found else (0, 0)
        preview.entries += entries
        preview.entries_changed += changed
        if not ids:
            return
        progress.advance(len(ids))
        progress.status(f"{preview.entries:,} entries")
        throttle.pace(entries)
        users = next_chunk_users(users, entries, target)
        after = upto


def _sample_tops(ctx: Context, options: PreviewOptions, preview: BackfillPreview) -> None:
    if options.sample_feeds == 0:
        return
    conn = ctx.conn
    params = {**_shard_params(options), "limit": options.sample_feeds}
    ids = [r[0] for r in conn.execute(query("preview_sample_users"), params)]
    rows = conn.execute(query("preview_tops"), {"ids": ids, "top": options.top}).fetchall()
    movement = summarize((before, after) for _, before, after in rows)
    preview.feeds_sampled = movement.feeds
    preview.top_overlap_mean = movement.mean_overlap
    preview.top_overlap_min = movement.min_overlap
    preview.top_unchanged_share = movement.unchanged_share
