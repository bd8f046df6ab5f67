"""Running `python -m feedctl` as a real process against a test's own servers."""

from __future__ import annotations

import os

from feedctl.config import Settings


def feedctl_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a feedctl process: the test's servers and key space only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDCTL_")}
    env.update(
        FEEDCTL_DATABASE_URL=settings.database_url or "",
        FEEDCTL_REDIS_URL=settings.redis_url or "",
        FEEDCTL_REDIS_KEY_PREFIX=settings.redis_key_prefix,
        FEEDCTL_FEED_CAP=str(settings.feed_cap),
        FEEDCTL_HOME=str(settings.home),
    )
    env.update(extra)
    return env
