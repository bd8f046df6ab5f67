"""`--shard i/N`: one of N disjoint sets of users, those with user_id mod N = i.

The modulo is the non-negative one (Python's `%`; in SQL `(id % N + N) % N`), so every
user id, negative ones included, belongs to exactly one shard.
"""

from __future__ import annotations

import dataclasses
import re

from feedctl.errors import BadInputError

MAX_SHARDS = 4096
_SHARD = re.compile(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*")


@dataclasses.dataclass(frozen=True)
class Shard:
    """Users with user_id % count = index (index 0 of 1 is every user)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise BadInputError(f"shard count must be between 1 and {MAX_SHARDS}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise BadInputError(
                f"shard index must be between 0 and {self.count - 1} for {self.count} shards, "
                f"got {self.index}"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, user_id: int) -> bool:
        """Whether a user belongs to this shard (the SQL uses the same non-negative modulo)."""
        return user_id % self.count == self.index


def parse_shard(text: str) -> Shard:
    """`i/N` with 0 <= i < N, as given to --shard."""
    match = _SHARD.fullmatch(text)
    if not match:
        raise BadInputError(f"--shard must look like i/N (for example 0/4), got {text!r}")
    return Shard(index=int(match.group(1)), count=int(match.group(2)))
