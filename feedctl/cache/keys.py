"""Key names. Everything about one feed lives under one key (Redis Cluster ready)."""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

FeedKind = Literal["user", "community"]
KINDS: tuple[FeedKind, ...] = ("user", "community")
_KIND_TAGS: dict[str, str] = {"user": "u", "community": "c"}
_TAG_KINDS: dict[str, FeedKind] = {"u": "user", "c": "community"}
_FEED_SUFFIX = re.compile(r"feed:([uc]):(0|-?[1-9][0-9]{0,18})")
_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


@dataclasses.dataclass(frozen=True)
class FeedRef:
    """A feed: a user's home feed or a community's feed."""

    kind: FeedKind
    id: int

    def key(self, prefix: str) -> str:
        return f"{prefix}feed:{_KIND_TAGS[self.kind]}:{self.id}"


def user_feed(user_id: int) -> FeedRef:
    return FeedRef("user", user_id)


def community_feed(community_id: int) -> FeedRef:
    return FeedRef("community", community_id)


def feed_pattern(prefix: str) -> str:
    """A SCAN pattern for every feed key under a prefix (glob characters in it escaped)."""
    return _GLOB_SPECIAL.sub(r"\\\1", prefix) + "feed:*"


def parse_feed_key(prefix: str, key: str) -> FeedRef | None:
    """The feed a key names, or None when it is not a feed key under this prefix."""
    if not key.startswith(prefix):
        return None
    match = _FEED_SUFFIX.fullmatch(key[len(prefix) :])
    if match is None or not -(2**63) <= int(match.group(2)) < 2**63:
        return None
    return FeedRef(_TAG_KINDS[match.group(1)], int(match.group(2)))
