"""Deterministic synthetic communities, written to PostgreSQL with COPY.

`seed` appends users, communities, memberships, posts and their feed_events, shaped like
a real communities app: a few huge communities and many small ones, users in a handful of
communities each, heavy-tailed reactions and reputation. It also appends post_engagements
(views, reactions, comments) drawn from a hidden preference, `TRUE_PREFERENCE`, so that
`feedctl rank evaluate` and `rank tune` can be checked against a known answer (see
`_plan_engagements`). The posts' own counters are drawn as before, independently of them.

Determinism: every random draw comes from a stream derived from `SeedSpec.seed`, a stream
name and a chunk number, so the same spec (including `now`) gives the same rows. Ids start
after the current maximum of each table, so seeding twice appends.

Memory: memberships (users x communities per user) are never held whole. They are drawn
per chunk of users, twice: a first pass counts community sizes, a second pass regenerates
the same chunks to write them and to resolve post authors. What stays in memory is
O(communities + posts + one chunk), plus the engagement rows and one reputation per user
while engagement is planned.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl
import psycopg
from psycopg import sql

from feedctl.errors import BadInputError
from feedctl.progress import SILENT, Progress
from feedctl.rank.heuristic import Heuristic

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

USER_CHUNK: Final = 50_000  # users per generated chunk; part of the determinism contract
ROW_CHUNK: Final = 100_000  # rows per COPY write for tables held in memory

POPULARITY_EXPONENT: Final = 1.0  # Zipf exponent of community popularity
POSTS_SIZE_EXPONENT: Final = 0.8  # posts per community ~ size ** this
MEMBERSHIP_P: Final = 0.4  # geometric communities per user: mean 1 / p = 2.5
MAX_DRAW_ROUNDS: Final = 32  # redraws of duplicate (user, community) picks
JOIN_WINDOW_DAYS: Final = 365  # memberships are spread over this window before the posts
ACTIVE_DAYS: Final = 7
INACTIVE_DAYS: Final = (8, 60)
NEVER_ACTIVE_SHARE: Final = 0.25  # share of inactive users with last_active_at NULL
COMMENT_RATE_BETA: Final = (2.0, 6.0)  # comments ~ Binomial(reactions, Beta): mean 1/4

SECOND_US: Final = 1_000_000
DAY_S: Final = 86_400
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# Random stream names: each table draws from its own streams.
_USERS, _COMMUNITIES, _MEMBERSHIPS, _JOINS, _POSTS, _DELETIONS, _ENGAGEMENT = range(1, 8)

# The hidden preference behind seeded engagement: a post's engagement rate at a moment is
#   (1 + reactions_weight * reactions + comments_weight * comments)   (counted so far)
#   * (1 + author_reputation) ** reputation_weight * 2 ** (-age_hours / half_life_hours)
#   * noise (lognormal, per post)
# which orders posts as the rank key of these coefficients does, up to the noise.
TRUE_PREFERENCE: Final = Heuristic(
    version="seed-truth",
    half_life_hours=12.0,
    reactions_weight=0.5,
    comments_weight=2.0,
    reputation_weight=0.5,
)
ENGAGEMENT_RATES: Final = (0.12, 0.008, 0.0025)  # views, reactions, comments per hour per unit
ENGAGEMENT_KINDS: Final = ("view", "reaction", "comment")
ENGAGEMENT_NOISE_SIGMA: Final = 0.5  # sigma of the per-post lognormal noise
EXCITATION_CAP: Final = 16.0  # the (1 + weighted counts) factor stops growing here
ENGAGEMENT_STEP_HOURS: Final = 1.0  # the simulation's time step
ENGAGEMENT_HALF_LIVES: Final = 12  # a post draws engagement for this many half-lives at most


@dataclass(frozen=True)
class SeedSpec:
    """What to generate. The same spec (with a fixed `now`) gives the same rows."""

    users: int = 2_000
    communities: int = 40
    posts: int = 4_000
    days: int = 28  # posts spread over this many days before `now`
    seed: int = 42
    now: datetime | None = None  # reference time (UTC); None = now truncated to the minute
    join_events: bool = True  # also append one member_joined event per membership
    deleted_share: float = 0.01  # share of posts deleted afterwards
    active_share: float = 0.3  # share of users active within the last 7 days
    engagement: bool = True  # also append post_engagements drawn from TRUE_PREFERENCE


@dataclass(frozen=True)
class SeedReport:
    """What `seed` wrote."""

    users: int
    communities: int
    memberships: int
    posts: int
    deleted_posts: int
    events: int
    fanout_entries: int  # sum over live posts of the member count of their community
    engagements: int = 0  # post_engagements rows


@dataclass(frozen=True)
class _Bases:
    """The largest existing id of each table; new ids start after them."""

    user: int
    community: int
    post: int


@dataclass(frozen=True)
class _Community:
    """Community popularity as a cumulative distribution, and one guaranteed member each."""

    cdf: FloatArray
    anchors: IntArray  # user index of a member of each community


@dataclass(frozen=True)
class _MembershipChunk:
    """Memberships of one chunk of users, ordered by user then community (indexes)."""

    user: IntArray
    community: IntArray


@dataclass(frozen=True)
class _Posts:
    """All posts, ordered by created_at (the order of their ids)."""

    community: IntArray
    member_rank: IntArray  # which member (in membership order) of the community is author
    created_us: IntArray
    reactions: IntArray
    comments: IntArray
    deleted: BoolArray
    deleted_us: IntArray  # meaningful where deleted


# ---------------------------------------------------------------------------- entry point


def seed(conn: psycopg.Connection[Any], spec: SeedSpec, progress: Progress = SILENT) -> SeedReport:
    """Append synthetic data for `spec` in one transaction, and report what was written
    (rows as they are written; one transaction, so nothing to stop between)."""
    validate(spec)
    now_us = _now_us(spec.now)
    with conn.transaction(), conn.cursor() as cur:
        bases = _lock_and_read_bases(cur)
        writer = _CopyWriter(cur, progress)
        progress.phase("seeding (rows)", None)
        writer.write("users", USER_COLUMNS, _user_frames(spec, bases, now_us))
        community = _plan_communities(spec)
        writer.write("communities", COMMUNITY_COLUMNS, [_community_frame(spec, bases)])
        sizes = _community_sizes(spec, community)
        posts = _plan_posts(spec, sizes, now_us)
        authors = _write_memberships(writer, spec, bases, community, sizes, posts, now_us)
        writer.write("posts", POST_COLUMNS, _post_frames(posts, authors, bases))
        writer.write("feed_events", EVENT_COLUMNS, _post_event_frames(posts, authors, bases))
        if spec.engagement:
            reputation = _reputations(spec, bases, now_us)[authors]
            planned = _plan_engagements(spec, posts, reputation, sizes, now_us)
            users = _resolve_members(spec, community, planned.member_rank, planned.community)
            frames = _engagement_frames(planned, users, bases)
            writer.write("post_engagements", ENGAGEMENT_COLUMNS, frames)
    return _report(sizes, posts, writer)


def validate(spec: SeedSpec) -> None:
    """Raise BadInputError if `spec` cannot be generated."""
    for name in ("users", "communities", "posts", "days"):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadInputError(f"seed spec: {name} must be an integer >= 1, got {value!r}")
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, int) or spec.seed < 0:
        raise BadInputError(f"seed spec: seed must be an integer >= 0, got {spec.seed!r}")
    for name in ("deleted_share", "active_share"):
        share = getattr(spec, name)
        if not isinstance(share, int | float) or not 0.0 <= share <= 1.0:
            raise BadInputError(f"seed spec: {name} must be between 0 and 1, got {share!r}")
    if spec.now is not None and not isinstance(spec.now, datetime):
        raise BadInputError(f"seed spec: now must be a datetime or None, got {spec.now!r}")


def _now_us(now: datetime | None) -> int:
    """The reference time as microseconds since the epoch; a naive `now` is taken as UTC."""
    if now is None:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return (now - EPOCH) // timedelta(microseconds=1)


def _lock_and_read_bases(cur: psycopg.Cursor[Any]) -> _Bases:
    """Block concurrent writers of the id-bearing tables, then read their largest ids."""
    cur.execute("LOCK TABLE users, communities, posts IN SHARE ROW EXCLUSIVE MODE")
    row = cur.execute(
        "SELECT (SELECT coalesce(max(id), 0) FROM users),"
        " (SELECT coalesce(max(id), 0) FROM communities),"
        " (SELECT coalesce(max(id), 0) FROM posts)"
    ).fetchone()
    assert row is not None
    return _Bases(user=int(row[0]), community=int(row[1]), post=int(row[2]))


def _report(sizes: IntArray, posts: _Posts, writer: _CopyWriter) -> SeedReport:
    live = ~posts.deleted
    return SeedReport(
        users=writer.written("users"),
        communities=writer.written("communities"),
        memberships=writer.written("memberships"),
        posts=writer.written("posts"),
        deleted_posts=int(posts.deleted.sum()),
        events=writer.written("feed_events"),
        fanout_entries=int(sizes[posts.community[live]].sum()),
        engagements=writer.written("post_engagements"),
    )


# ------------------------------------------------------------------------------- writing

USER_COLUMNS: Final = ("id", "reputation", "last_active_at")
COMMUNITY_COLUMNS: Final = ("id", "name")
MEMBERSHIP_COLUMNS: Final = ("community_id", "user_id", "joined_at")
POST_COLUMNS: Final = (
    "id",
    "community_id",
    "author_id",
    "created_at",
    "reactions_count",
    "comments_count",
    "deleted_at",
)
EVENT_COLUMNS: Final = ("kind", "post_id", "community_id", "user_id", "created_at")
ENGAGEMENT_COLUMNS: Final = ("user_id", "post_id", "kind", "created_at")


class _CopyWriter:
    """Writes frames to tables with COPY ... (FORMAT csv), counting rows per table."""

    def __init__(self, cur: psycopg.Cursor[Any], progress: Progress) -> None:
        self._cur = cur
        self._progress = progress
        self._written: dict[str, int] = {}

    def write(self, table: str, columns: Iterable[str], frames: Iterable[pl.DataFrame]) -> None:
        """One COPY statement for `table`, fed one CSV chunk per frame."""
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        self._progress.status(table)
        with self._cur.copy(statement) as copy:
            for frame in frames:
                copy.write(_csv_bytes(frame))
                self._count(table, frame.height)

    def written(self, table: str) -> int:
        return self._written.get(table, 0)

    def _count(self, table: str, rows: int) -> None:
        self._written[table] = self.written(table) + rows
        self._progress.advance(rows)


def _csv_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_csv(buffer, include_header=False)
    return buffer.getvalue()


def _timestamps(name: str, us: IntArray, missing: BoolArray | None = None) -> pl.Series:
    """Microseconds since the epoch as a UTC timestamp column; `missing` rows become NULL."""
    series = pl.Series(name, us, dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
    if missing is not None and missing.any():
        series = series.set(pl.Series(missing), None)
    return series


def _ids(name: str, base: int, index: IntArray) -> pl.Series:
    return pl.Series(name, index + (base + 1), dtype=pl.Int64)


def _row_chunks(rows: int) -> Iterator[slice]:
    for start in range(0, rows, ROW_CHUNK):
        yield slice(start, min(start + ROW_CHUNK, rows))


def _user_chunks(users: int) -> Iterator[tuple[int, int, int]]:
    """(chunk number, first user index, end user index) of each chunk of users."""
    for number, start in enumerate(range(0, users, USER_CHUNK)):
        yield number, start, min(start + USER_CHUNK, users)


# ---------------------------------------------------------------------------- randomness


def _rng(seed: int, stream: int, chunk: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, chunk)))


def _categorical(rng: np.random.Generator, cdf: FloatArray, size: int) -> IntArray:
    """`size` draws of indexes with probabilities given by the cumulative `cdf`."""
    picks = np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right")
    indexes: IntArray = np.minimum(picks, len(cdf) - 1).astype(np.int64)
    return indexes


def _cumulative(weights: FloatArray) -> FloatArray:
    cdf: FloatArray = np.cumsum(weights / weights.sum())
    return cdf


# --------------------------------------------------------------------------------- users


def _user_frames(spec: SeedSpec, bases: _Bases, now_us: int) -> Iterator[pl.DataFrame]:
    for number, start, end in _user_chunks(spec.users):
        yield _user_frame(spec, bases, now_us, number, start, end)


def _user_frame(
    spec: SeedSpec, bases: _Bases, now_us: int, number: int, start: int, end: int
) -> pl.DataFrame:
    """Heavy-tailed reputation; `active_share` active within 7 days, others older or NULL."""
    rng = _rng(spec.seed, _USERS, number)
    rows = end - start
    reputation = np.round(rng.lognormal(mean=2.0, sigma=1.5, size=rows), 2)
    active = rng.permutation(rows) < round(spec.active_share * rows)
    never = ~active & (rng.random(rows) < NEVER_ACTIVE_SHARE)
    recent_s = rng.integers(0, ACTIVE_DAYS * DAY_S, rows)
    older_s = rng.integers(INACTIVE_DAYS[0] * DAY_S, INACTIVE_DAYS[1] * DAY_S + 1, rows)
    last_active_us = now_us - np.where(active, recent_s, older_s) * SECOND_US
    return pl.DataFrame(
        [
            _ids("id", bases.user, np.arange(start, end, dtype=np.int64)),
            pl.Series("reputation", reputation, dtype=pl.Float64),
            _timestamps("last_active_at", last_active_us, missing=never),
        ]
    )


# --------------------------------------------------------------------------- communities


def _plan_communities(spec: SeedSpec) -> _Community:
    """Zipf popularity over a shuffled order of communities, and a random anchor member."""
    rng = _rng(spec.seed, _COMMUNITIES)
    ranks = rng.permutation(spec.communities) + 1
    weights = ranks.astype(np.float64) ** -POPULARITY_EXPONENT
    anchors = rng.integers(0, spec.users, spec.communities)
    return _Community(cdf=_cumulative(weights), anchors=anchors.astype(np.int64))


def _community_frame(spec: SeedSpec, bases: _Bases) -> pl.DataFrame:
    ids = _ids("id", bases.community, np.arange(spec.communities, dtype=np.int64))
    return pl.DataFrame([ids]).with_columns(
        name=pl.format("community-{}", pl.col("id").cast(pl.String))
    )


# --------------------------------------------------------------------------- memberships


def _membership_chunks(spec: SeedSpec, community: _Community) -> Iterator[_MembershipChunk]:
    for number, start, end in _user_chunks(spec.users):
        yield _membership_chunk(spec, community, number, start, end)


def _membership_chunk(
    spec: SeedSpec, community: _Community, number: int, start: int, end: int
) -> _MembershipChunk:
    """Each user joins a geometric number of distinct communities, picked by popularity.

    Pairs are encoded as local_user * communities + community, so that np.unique both
    removes duplicate picks and orders the chunk by user then community.
    """
    rng = _rng(spec.seed, _MEMBERSHIPS, number)
    width = spec.communities
    wanted = np.minimum(rng.geometric(MEMBERSHIP_P, end - start), width)
    anchored = np.flatnonzero((community.anchors >= start) & (community.anchors < end))
    pairs = np.unique((community.anchors[anchored] - start) * width + anchored)
    for _ in range(MAX_DRAW_ROUNDS):
        need = np.maximum(wanted - np.bincount(pairs // width, minlength=end - start), 0)
        if not need.any():
            break
        users = np.repeat(np.arange(end - start, dtype=np.int64), need)
        picks = _categorical(rng, community.cdf, len(users))
        pairs = np.unique(np.concatenate([pairs, users * width + picks]))
    return _MembershipChunk(user=pairs // width + start, community=pairs % width)


def _community_sizes(spec: SeedSpec, community: _Community) -> IntArray:
    """First pass over the memberships: the member count of each community."""
    sizes = np.zeros(spec.communities, dtype=np.int64)
    for chunk in _membership_chunks(spec, community):
        sizes += np.bincount(chunk.community, minlength=spec.communities)
    return sizes


def _ranks_within_community(community: IntArray, seen: IntArray) -> IntArray:
    """Each membership's position among its community's members, in membership order.

    `seen` holds how many members each community had in the chunks before this one.
    """
    order = np.argsort(community, kind="stable")
    counts = np.bincount(community, minlength=len(seen))
    starts = np.cumsum(counts) - counts
    ranks = np.empty_like(community)
    ranks[order] = np.arange(len(community)) - starts[community[order]]
    return ranks + seen[community]


def _joined_us(
    rng: np.random.Generator, first: int, rows: int, total: int, posts_start_us: int
) -> IntArray:
    """Join times that grow with the membership position and end before the first post."""
    window_s = JOIN_WINDOW_DAYS * DAY_S
    position = np.arange(first, first + rows, dtype=np.float64) + rng.random(rows)
    offset_s = np.floor(position * window_s / total).astype(np.int64)
    return posts_start_us - (window_s - offset_s) * SECOND_US


class _MemberIndex:
    """Resolves (community, member rank) pairs to users while memberships stream by.

    Every rank is below its community's size, so each key is met exactly once per pass.
    """

    def __init__(self, member_rank: IntArray, community: IntArray, width: int) -> None:
        self._width = width
        keys = member_rank * width + community
        self._keys, self._inverse = np.unique(keys, return_inverse=True)
        self._users = np.full(len(self._keys), -1, dtype=np.int64)

    def absorb(self, community: IntArray, rank: IntArray, user: IntArray) -> None:
        if not len(self._keys):
            return
        keys = rank * self._width + community
        slots = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        hit = self._keys[slots] == keys
        self._users[slots[hit]] = user[hit]

    def users(self) -> IntArray:
        """The user index of each pair, in the order given."""
        users: IntArray = self._users[self._inverse.reshape(-1)]
        return users


def _write_memberships(
    writer: _CopyWriter,
    spec: SeedSpec,
    bases: _Bases,
    community: _Community,
    sizes: IntArray,
    posts: _Posts,
    now_us: int,
) -> IntArray:
    """Second pass: write memberships (and member_joined events); return post authors."""
    total = int(sizes.sum())
    seen = np.zeros(spec.communities, dtype=np.int64)
    index = _MemberIndex(posts.member_rank, posts.community, spec.communities)
    first = 0
    for number, chunk in enumerate(_membership_chunks(spec, community)):
        rows = len(chunk.user)
        rng = _rng(spec.seed, _JOINS, number)
        joined = _joined_us(rng, first, rows, total, _posts_start_us(spec, now_us))
        index.absorb(chunk.community, _ranks_within_community(chunk.community, seen), chunk.user)
        seen += np.bincount(chunk.community, minlength=spec.communities)
        first += rows
        frame = _membership_frame(chunk, joined, bases)
        writer.write("memberships", MEMBERSHIP_COLUMNS, [frame])
        if spec.join_events:
            writer.write("feed_events", EVENT_COLUMNS, [_join_event_frame(frame)])
    return index.users()


def _membership_frame(chunk: _MembershipChunk, joined_us: IntArray, bases: _Bases) -> pl.DataFrame:
    return pl.DataFrame(
        [
            _ids("community_id", bases.community, chunk.community),
            _ids("user_id", bases.user, chunk.user),
            _timestamps("joined_at", joined_us),
        ]
    )


def _join_event_frame(memberships: pl.DataFrame) -> pl.DataFrame:
    return memberships.select(
        kind=pl.lit("member_joined"),
        post_id=pl.lit(None, dtype=pl.Int64),
        community_id="community_id",
        user_id="user_id",
        created_at="joined_at",
    )


# --------------------------------------------------------------------------------- posts


def _posts_start_us(spec: SeedSpec, now_us: int) -> int:
    """Posts are created in [now - days, now); every membership is older."""
    return now_us - spec.days * DAY_S * SECOND_US


def _plan_posts(spec: SeedSpec, sizes: IntArray, now_us: int) -> _Posts:
    """Posts per community ~ size ** 0.8, spread over `days`, ordered by created_at."""
    rng = _rng(spec.seed, _POSTS)
    weights = sizes.astype(np.float64) ** POSTS_SIZE_EXPONENT
    community = _categorical(rng, _cumulative(weights), spec.posts)
    member_rank = rng.integers(0, sizes[community])
    created_us = now_us - rng.integers(1, spec.days * DAY_S + 1, spec.posts) * SECOND_US
    reactions = _reactions(rng, sizes[community])
    comments = rng.binomial(reactions, rng.beta(*COMMENT_RATE_BETA, spec.posts)).astype(np.int64)
    order = np.lexsort((member_rank, community, created_us))
    created_us = created_us[order]
    deleted, deleted_us = _deletions(spec, created_us, now_us)
    return _Posts(
        community=community[order],
        member_rank=member_rank[order],
        created_us=created_us,
        reactions=reactions[order],
        comments=comments[order],
        deleted=deleted,
        deleted_us=deleted_us,
    )


def _reactions(rng: np.random.Generator, audience: IntArray) -> IntArray:
    """Lognormal reaction counts whose median grows with the community's size."""
    median = 1.0 + 0.25 * np.log(audience.astype(np.float64))
    return np.floor(rng.lognormal(mean=median, sigma=1.3)).astype(np.int64)


def _deletions(spec: SeedSpec, created_us: IntArray, now_us: int) -> tuple[BoolArray, IntArray]:
    """A `deleted_share` of posts, each deleted between 1 s after creation and `now`."""
    rng = _rng(spec.seed, _DELETIONS)
    rows = len(created_us)
    chosen = rng.choice(rows, size=round(spec.deleted_share * rows), replace=False)
    deleted = np.zeros(rows, dtype=np.bool_)
    deleted[chosen] = True
    age_s = (now_us - created_us) // SECOND_US
    delay_s = 1 + np.floor(rng.random(rows) * age_s).astype(np.int64)
    return deleted, created_us + delay_s * SECOND_US


def _post_frames(posts: _Posts, authors: IntArray, bases: _Bases) -> Iterator[pl.DataFrame]:
    for rows in _row_chunks(len(posts.community)):
        yield pl.DataFrame(
            [
                _ids("id", bases.post, np.arange(rows.start, rows.stop, dtype=np.int64)),
                _ids("community_id", bases.community, posts.community[rows]),
                _ids("author_id", bases.user, authors[rows]),
                _timestamps("created_at", posts.created_us[rows]),
                pl.Series("reactions_count", posts.reactions[rows], dtype=pl.Int64),
                pl.Series("comments_count", posts.comments[rows], dtype=pl.Int64),
                _timestamps("deleted_at", posts.deleted_us[rows], missing=~posts.deleted[rows]),
            ]
        )


def _post_event_frames(posts: _Posts, authors: IntArray, bases: _Bases) -> Iterator[pl.DataFrame]:
    """post_created for every post in created_at order, then post_deleted by deleted_at."""
    created = np.arange(len(posts.community), dtype=np.int64)
    deleted = np.flatnonzero(posts.deleted)
    deleted = deleted[np.lexsort((deleted, posts.deleted_us[deleted]))]
    for kind, index, at_us in (
        ("post_created", created, posts.created_us),
        ("post_deleted", deleted, posts.deleted_us),
    ):
        for rows in _row_chunks(len(index)):
            chosen = index[rows]
            yield pl.DataFrame(
                [
                    pl.Series("kind", [kind] * len(chosen), dtype=pl.String),
                    _ids("post_id", bases.post, chosen),
                    _ids("community_id", bases.community, posts.community[chosen]),
                    _ids("user_id", bases.user, authors[chosen]),
                    _timestamps("created_at", at_us[chosen]),
                ]
            )


# ---------------------------------------------------------------------------- engagement


@dataclass(frozen=True)
class _Engagements:
    """Planned engagement rows, ordered by time; the user is a member rank of the community."""

    post: IntArray  # post index
    kind: IntArray  # index into ENGAGEMENT_KINDS
    created_us: IntArray
    community: IntArray
    member_rank: IntArray


def _reputations(spec: SeedSpec, bases: _Bases, now_us: int) -> FloatArray:
    """Every new user's reputation by user index, drawn again as `_user_frame` drew it."""
    parts = [
        _user_frame(spec, bases, now_us, number, start, end)["reputation"].to_numpy()
        for number, start, end in _user_chunks(spec.users)
    ]
    reputation: FloatArray = np.concatenate(parts).astype(np.float64)
    return reputation


def _plan_engagements(
    spec: SeedSpec, posts: _Posts, reputation: FloatArray, sizes: IntArray, now_us: int
) -> _Engagements:
    """Simulate engagement hour by hour from TRUE_PREFERENCE (see its comment).

    Each step draws Poisson counts of each kind for every post still alive (not deleted,
    before `now`, younger than ENGAGEMENT_HALF_LIVES half-lives), all posts at once; the
    reactions and comments drawn so far raise the rate of later steps. Each engagement
    goes to a uniformly drawn member of the post's community.
    """
    truth = TRUE_PREFERENCE
    rng = _rng(spec.seed, _ENGAGEMENT)
    count = len(posts.community)
    base = (1.0 + reputation) ** truth.reputation_weight
    base = base * rng.lognormal(0.0, ENGAGEMENT_NOISE_SIGMA, count)
    end_us = np.where(posts.deleted, posts.deleted_us, now_us)
    life_us = end_us - posts.created_us
    step_us = int(ENGAGEMENT_STEP_HOURS * 3600 * SECOND_US)
    horizon_hours = ENGAGEMENT_HALF_LIVES * truth.half_life_hours
    steps = int(np.ceil(horizon_hours / ENGAGEMENT_STEP_HOURS))
    reactions = np.zeros(count, dtype=np.float64)
    comments = np.zeros(count, dtype=np.float64)
    drawn: list[tuple[IntArray, IntArray, IntArray]] = []
    for step in range(steps):
        alive = np.flatnonzero(life_us > step * step_us)
        if not alive.size:
            break
        excitation = 1.0 + truth.reactions_weight * reactions[alive]
        excitation += truth.comments_weight * comments[alive]
        decay = 2.0 ** (-(step + 0.5) * ENGAGEMENT_STEP_HOURS / truth.half_life_hours)
        intensity = base[alive] * np.minimum(excitation, EXCITATION_CAP) * decay
        intensity *= ENGAGEMENT_STEP_HOURS
        for code, rate in enumerate(ENGAGEMENT_RATES):
            counts = rng.poisson(rate * intensity)
            post = np.repeat(alive, counts)
            offset_us = ((step + rng.random(len(post))) * step_us).astype(np.int64)
            at_us = posts.created_us[post] + offset_us
            kept = at_us < end_us[post]
            post, at_us = post[kept], at_us[kept]
            if code == 1:
                reactions += np.bincount(post, minlength=count)
            elif code == 2:
                comments += np.bincount(post, minlength=count)
            drawn.append((post, np.full(len(post), code, dtype=np.int64), at_us))
    post = np.concatenate([d[0] for d in drawn]) if drawn else np.zeros(0, dtype=np.int64)
    kind = np.concatenate([d[1] for d in drawn]) if drawn else np.zeros(0, dtype=np.int64)
    at_us = np.concatenate([d[2] for d in drawn]) if drawn else np.zeros(0, dtype=np.int64)
    order = np.lexsort((kind, post, at_us))
    post, kind, at_us = post[order], kind[order], at_us[order]
    community = posts.community[post]
    member_rank = rng.integers(0, sizes[community]) if len(post) else post.copy()
    return _Engagements(post, kind, at_us, community, member_rank.astype(np.int64))


def _resolve_members(
    spec: SeedSpec, community: _Community, member_rank: IntArray, of: IntArray
) -> IntArray:
    """A third pass over the (regenerated) memberships: the user of each (community, rank)."""
    index = _MemberIndex(member_rank, of, spec.communities)
    seen = np.zeros(spec.communities, dtype=np.int64)
    for chunk in _membership_chunks(spec, community):
        index.absorb(chunk.community, _ranks_within_community(chunk.community, seen), chunk.user)
        seen += np.bincount(chunk.community, minlength=spec.communities)
    return index.users()


def _engagement_frames(
    planned: _Engagements, users: IntArray, bases: _Bases
) -> Iterator[pl.DataFrame]:
    kinds = np.array(ENGAGEMENT_KINDS)
    for rows in _row_chunks(len(planned.post)):
        yield pl.DataFrame(
            [
                _ids("user_id", bases.user, users[rows]),
                _ids("post_id", bases.post, planned.post[rows]),
                pl.Series("kind", kinds[planned.kind[rows]], dtype=pl.String),
                _timestamps("created_at", planned.created_us[rows]),
            ]
        )
