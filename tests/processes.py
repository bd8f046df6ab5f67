"""Running `python -m feedctl` as a real process against a test's own servers."""

from __future__ import annotations

import os
import subprocess
import sys

from feedctl.config import Settings
from feedctl.faults import KILL_AT_ENV


def feedctl_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a feedctl process: the test's servers and key space only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDCTL_")}
    env.update(
        FEEDCTL_DATABASE_URL=settings.database_url or "",
        FEEDCTL_REDIS_URL=settings.redis_url or "",
        FEEDCTL_REDIS_KEY_PREFIX=settings.redis_key_prefix,
        FEEDCTL_FEED_CAP=str(settings.feed_cap),
        FEEDCTL_BATCH_SIZE=str(settings.batch_size),
        FEEDCTL_FEED_RETENTION=settings.feed_retention,
        FEEDCTL_HOME=str(settings.home),
    )
    env.update(extra)
    return env


def run_feedctl(
    settings: Settings, *args: str, kill_at: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m feedctl ARGS`; with `kill_at`, it SIGKILLs itself there (exit code -9)."""
    env = feedctl_env(settings, **({KILL_AT_ENV: kill_at} if kill_at else {}))
    return subprocess.run(
        [sys.executable, "-m", "feedctl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
