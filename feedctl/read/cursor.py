"""Opaque, versioned, tamper-evident page cursors.

A cursor is base64url(version, feed kind, feed id, score, post id, pin, cached version,
HMAC tag): it names the last item of a page, the feed it belongs to, the PostgreSQL
snapshot its walk is pinned to (xmin, xmax, the transactions in progress, and the time;
docs/decisions/0015) and, for a page read from Redis alone, the version of the cached feed
it was read from (docs/decisions/0029), signed with the first of the cursor secrets; any
of them verifies (so a secret can be rotated without breaking walks under way).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import math
import re
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from feedctl.cache.keys import FeedRef
from feedctl.errors import CursorError

VERSION = 3
CURSOR_MAX_AGE = timedelta(hours=24)  # post_score_change rows are kept at least this long
MAX_IN_PROGRESS = 32  # beyond this, a pin keeps only xmin (coarser, still steady)
# version, kind, id, score, post id, xmin, xmax, at, cached incarnation and writes, n
_HEAD = struct.Struct(">BBqdqQQqQQB")
_HEAD_V2 = struct.Struct(">BBqdqQQqB")  # as version 2 wrote it (no cached version)
_XID = struct.Struct(">Q")
_TAG_BYTES = 12
_KIND_CODES = {"user": 1, "community": 2}
_MAX_CHARS = -(-(_HEAD.size + MAX_IN_PROGRESS * _XID.size + _TAG_BYTES) * 4 // 3)
_INCARNATION = re.compile(r"[0-9a-f]{1,16}")
_CANONICAL = re.compile(f"[A-Za-z0-9_-]{{1,{_MAX_CHARS}}}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclasses.dataclass(frozen=True)
class Pin:
    """The PostgreSQL snapshot a walk through a feed is pinned to, taken by its first page.

    A score change by a transaction this snapshot does not see is undone for the walk.
    `at` is the database clock then (cursors expire after CURSOR_MAX_AGE).
    """

    xmin: int
    xmax: int
    in_progress: tuple[int, ...]
    at: datetime

    @property
    def snapshot(self) -> str:
        """The snapshot in pg_snapshot's text form, `xmin:xmax:xip,...`."""
        return f"{self.xmin}:{self.xmax}:{','.join(str(x) for x in self.in_progress)}"

    @classmethod
    def of_snapshot(cls, text: str, at: datetime) -> Pin:
        """A pin from pg_snapshot text; one with too many transactions in progress keeps
        only xmin (every transaction from xmin on counts as unseen: coarser, still steady)."""
        xmin, xmax, listed = text.split(":")
        in_progress = tuple(int(x) for x in listed.split(",") if x)
        if len(in_progress) > MAX_IN_PROGRESS:
            return cls(int(xmin), int(xmin), (), at)
        return cls(int(xmin), int(xmax), in_progress, at)


@dataclasses.dataclass(frozen=True)
class Position:
    """Where a page ends: after (score, post id), in a walk pinned to `pin`; `cached`, the
    version (fence incarnation, writes landed) of the cached feed a page read from Redis
    alone was read from: while the feed keeps it, the next page comes from Redis too."""

    score: float
    post_id: int
    pin: Pin
    cached: tuple[str, int] | None = None


def _tag(body: bytes, secret: str) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()[:_TAG_BYTES]


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def encode_cursor(feed: FeedRef, position: Position, secret: str) -> str:
    pin = position.pin
    if len(pin.in_progress) > MAX_IN_PROGRESS:
        raise ValueError(f"a pin holds at most {MAX_IN_PROGRESS} transactions in progress")
    incarnation, written = _cached_fields(position.cached)
    body = _HEAD.pack(
        VERSION,
        _KIND_CODES[feed.kind],
        feed.id,
        position.score,
        position.post_id,
        pin.xmin,
        pin.xmax,
        _micros(pin.at),
        incarnation,
        written,
        len(pin.in_progress),
    ) + b"".join(_XID.pack(x) for x in pin.in_progress)
    return base64.urlsafe_b64encode(body + _tag(body, secret)).rstrip(b"=").decode()


def decode_cursor(token: str, feed: FeedRef, secrets: str | Sequence[str]) -> Position:
    """The position a cursor points after, or CursorError saying what is wrong.

    `secrets` are the accepted signing secrets: a cursor signed with any of them verifies.
    """
    if not _CANONICAL.fullmatch(token):
        raise CursorError("cursor is not valid: it is not base64url text of the right length")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise CursorError("cursor is not valid: it is not base64url text") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != token:
        raise CursorError("cursor is not valid: it is not in canonical form")
    head = _HEAD_V2 if raw[:1] == b"\x02" else _HEAD
    if len(raw) < head.size + _TAG_BYTES:
        raise CursorError("cursor is not valid: it is truncated")
    size = head.size + raw[head.size - 1] * _XID.size
    if len(raw) != size + _TAG_BYTES:
        raise CursorError("cursor is not valid: it is truncated or padded")
    body, tag = raw[:size], raw[size:]
    accepted = (secrets,) if isinstance(secrets, str) else tuple(secrets)
    if not any(hmac.compare_digest(tag, _tag(body, secret)) for secret in accepted):
        raise CursorError("cursor is not valid: its signature does not match (forged or altered)")
    incarnation = written = 0
    if head is _HEAD_V2:
        version, kind, feed_id, score, post_id, xmin, xmax, at_us, count = head.unpack_from(body)
    else:
        fields = head.unpack_from(body)
        version, kind, feed_id, score, post_id, xmin, xmax, at_us, incarnation, written, count = (
            fields
        )
    if version not in (2, VERSION):
        raise CursorError(f"cursor version {version} is not supported (expected {VERSION})")
    if kind != _KIND_CODES[feed.kind] or feed_id != feed.id:
        raise CursorError(f"cursor belongs to another feed, not the {feed.kind} feed {feed.id}")
    if math.isnan(score):
        raise CursorError("cursor is not valid: it holds no score")
    try:
        at = _EPOCH + at_us * _MICROSECOND
    except OverflowError:
        raise CursorError("cursor is not valid: its snapshot time is out of range") from None
    in_progress = tuple(x for (x,) in _XID.iter_unpack(body[head.size :]))
    if (
        count > MAX_IN_PROGRESS
        or not xmin <= xmax
        or any(not xmin <= x < xmax for x in in_progress)
    ):
        raise CursorError("cursor is not valid: its snapshot is inconsistent")
    cached = (f"{incarnation:016x}", written) if incarnation else None
    return Position(score, post_id, Pin(xmin, xmax, in_progress, at), cached)


def _cached_fields(cached: tuple[str, int] | None) -> tuple[int, int]:
    """A cached version as the cursor stores it: (0, 0) for none, or for an incarnation
    that is not the 16 hex digits fences make (such a feed's next page is checked)."""
    if cached is None or not _INCARNATION.fullmatch(cached[0]) or not 0 <= cached[1] < 2**64:
        return 0, 0
    return int(cached[0], 16), cached[1]


def require_fresh(position: Position, now: datetime, max_age: timedelta) -> None:
    """Refuse a cursor whose walk began longer ago than `max_age` (its history is gone)."""
    age = now - position.pin.at
    if age > max_age:
        hours = max_age / timedelta(hours=1)
        raise CursorError(
            f"cursor has expired (its walk began more than {hours:g} h ago): "
            "read the feed again from the first page"
        )
