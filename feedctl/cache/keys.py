"""Key names. Everything about one feed lives under one key (Redis Cluster ready)."""

from __future__ import annotations

import dataclasses
from typing import Literal

FeedKind = Literal["user", "community"]
KINDS: tuple[FeedKind, ...] = ("user", "community")
_KIND_TAGS: dict[str, str] = {"user": "u", "community": "c"}


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
    """A SCAN pattern for every feed key under a prefix."""
    return f"{prefix}feed:*"
