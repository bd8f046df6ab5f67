"""Opaque, versioned, tamper-evident page cursors.

A cursor is base64url(version, feed kind, feed id, score, post id, HMAC tag): it names
the last item of a page and the feed it belongs to, signed with `cursor_secret`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import struct

from feedctl.cache.keys import FeedRef
from feedctl.errors import CursorError

VERSION = 1
_BODY = struct.Struct(">BBqdq")
_TAG_BYTES = 12
_KIND_CODES = {"user": 1, "community": 2}
_TOKEN_CHARS = len(base64.urlsafe_b64encode(bytes(_BODY.size + _TAG_BYTES)).rstrip(b"="))
_CANONICAL = re.compile(f"[A-Za-z0-9_-]{{{_TOKEN_CHARS}}}")


def _tag(body: bytes, secret: str) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()[:_TAG_BYTES]


def encode_cursor(feed: FeedRef, score: float, post_id: int, secret: str) -> str:
    body = _BODY.pack(VERSION, _KIND_CODES[feed.kind], feed.id, score, post_id)
    return base64.urlsafe_b64encode(body + _tag(body, secret)).rstrip(b"=").decode()


def decode_cursor(token: str, feed: FeedRef, secret: str) -> tuple[float, int]:
    """The (score, post id) a cursor points after, or CursorError saying what is wrong."""
    if not _CANONICAL.fullmatch(token):
        raise CursorError("cursor is not valid: it is not base64url text of the right length")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise CursorError("cursor is not valid: it is not base64url text") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != token:
        raise CursorError("cursor is not valid: it is not in canonical form")
    if len(raw) != _BODY.size + _TAG_BYTES:
        raise CursorError("cursor is not valid: it is truncated or padded")
    body, tag = raw[: _BODY.size], raw[_BODY.size :]
    if not hmac.compare_digest(tag, _tag(body, secret)):
        raise CursorError("cursor is not valid: its signature does not match (forged or altered)")
    version, kind, feed_id, score, post_id = _BODY.unpack(body)
    if version != VERSION:
        raise CursorError(f"cursor version {version} is not supported (expected {VERSION})")
    if kind != _KIND_CODES[feed.kind] or feed_id != feed.id:
        raise CursorError(f"cursor belongs to another feed, not the {feed.kind} feed {feed.id}")
    if math.isnan(score):
        raise CursorError("cursor is not valid: it holds no score")
    return score, post_id
