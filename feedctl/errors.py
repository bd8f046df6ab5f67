"""The one error tree of feedctl. Each class carries the exit code the CLI uses.

Exit codes (what cron and alerting act on):
0 done, 1 failed, 2 usage or bad input, 3 done with some items failed, 75 locked.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_LOCKED = 75


class FeedctlError(Exception):
    """Base class: a message for a human and an exit code for a machine."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(FeedctlError):
    """A configuration file, variable or flag is malformed."""

    exit_code = EXIT_USAGE


class NotInstalledError(ConfigError):
    """Something needs an optional part of feedctl whose extra is not installed."""


class BadInputError(FeedctlError):
    """The user asked for something that cannot be: a bad id, cursor or value."""

    exit_code = EXIT_USAGE


class NotFoundError(BadInputError):
    """An id names nothing that exists."""


class HeuristicError(BadInputError):
    """A heuristic file is malformed."""


class CursorError(BadInputError):
    """A cursor is forged, truncated or belongs to another feed."""


class ServiceUnavailableError(FeedctlError):
    """PostgreSQL or Redis cannot be reached."""

    exit_code = EXIT_FAILED


class MigrationError(FeedctlError):
    """The migration history disagrees with the files."""

    exit_code = EXIT_FAILED


class LockedError(FeedctlError):
    """Another run holds the lock."""

    exit_code = EXIT_LOCKED
