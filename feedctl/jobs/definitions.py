"""Job definitions: one TOML file per scheduled job in the jobs folder.

```toml
# jobs/fanout.toml (the job's name is the file's name)
description = "Fan new posts out into members' feeds."
command = "fanout"                       # a feedctl command (see feedctl.jobs.commands)
flags = ["--max-events", "200000"]       # that command's flags, as on the command line
timeout = "50s"                          # s, m, h, d or w
lock = "feedctl.job.fanout"              # PostgreSQL advisory lock held while it runs
```

The folder is `jobs_dir` (FEEDCTL_JOBS_DIR), else the one shipped in the wheel, else
`jobs/` in a checkout. The flags are parsed by a `FlagParser` the front end hands in (the
CLI parses them with the job's own command, feedctl.cli.job_flags); without one a job keeps
its flags unparsed and no options, which is enough to list jobs and their runs.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import feedctl
from feedctl.config import Settings
from feedctl.durations import parse_duration
from feedctl.errors import BadInputError, ConfigError
from feedctl.jobs.commands import COMMANDS

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_KEYS = {"description", "command", "flags", "timeout", "lock"}
_REQUIRED = ("command", "timeout", "lock")
MIN_GRACE_SECONDS = 1.0
MAX_GRACE_SECONDS = 60.0
FlagParser = Callable[[str, Sequence[str]], dict[str, Any]]  # (command, flags) -> options


@dataclasses.dataclass(frozen=True)
class JobDefinition:
    """One scheduled job, validated."""

    name: str
    command: str
    flags: tuple[str, ...]
    options: dict[str, Any]
    timeout_seconds: float
    lock: str
    description: str = ""
    grace_seconds: float | None = None  # None: 10% of the timeout, within 1 to 60 seconds

    @property
    def hard_limit_seconds(self) -> float:
        """When the statement in progress is cancelled, if the run has not stopped by itself."""
        grace = self.grace_seconds
        if grace is None:
            grace = min(max(self.timeout_seconds * 0.1, MIN_GRACE_SECONDS), MAX_GRACE_SECONDS)
        return self.timeout_seconds + grace

    @property
    def command_line(self) -> str:
        """What an operator types for the same work: `feedctl fanout --max-events 1000`."""
        return " ".join(["feedctl", self.command, *self.flags])


def jobs_dir(settings: Settings) -> Path:
    """The configured folder, the one shipped in the wheel, or jobs/ in a checkout."""
    if settings.jobs_dir is not None:
        return settings.jobs_dir
    package = Path(feedctl.__file__).parent
    shipped = package / "_jobs"
    return shipped if shipped.is_dir() else package.parent / "jobs"


def parse_job(
    name: str, raw: dict[str, Any], source: str, parse_flags: FlagParser | None = None
) -> JobDefinition:
    """Validate one job table; every mistake names the file and the key."""
    if not NAME.match(name):
        raise ConfigError(f"{source}: job name {name!r} must be lower-case letters, digits, - or _")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        known = ", ".join(sorted(_KEYS))
        raise ConfigError(f"{source}: unknown key {unknown[0]!r} (known: {known})")
    for key in _REQUIRED:
        if key not in raw:
            raise ConfigError(f"{source}: {key!r} is missing")
    command = _text(raw, "command", source)
    if command not in COMMANDS:
        known = ", ".join(repr(c) for c in COMMANDS)
        raise ConfigError(f"{source}: command {command!r} is not one a job can run ({known})")
    flags = raw.get("flags", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise ConfigError(f"{source}: 'flags' must be a list of strings, got {flags!r}")
    try:
        options = parse_flags(command, flags) if parse_flags else {}
        timeout = parse_duration(_text(raw, "timeout", source)).total_seconds()
    except BadInputError as exc:
        raise ConfigError(f"{source}: {exc.message}") from None
    if timeout < 1:
        raise ConfigError(f"{source}: 'timeout' must be at least 1s")
    return JobDefinition(
        name=name,
        command=command,
        flags=tuple(flags),
        options=options,
        timeout_seconds=timeout,
        lock=_text(raw, "lock", source),
        description=str(raw.get("description", "")),
    )


def _text(raw: dict[str, Any], key: str, source: str) -> str:
    value = raw[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{source}: {key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def read_job_file(path: Path, parse_flags: FlagParser | None = None) -> JobDefinition:
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"job file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"job file {path} cannot be read: {exc.strerror}") from None
    return parse_job(path.stem, raw, f"job file {path}", parse_flags)


def load_jobs(folder: Path, parse_flags: FlagParser | None = None) -> list[JobDefinition]:
    """Every job in a folder, by name; a folder without jobs is an error."""
    if not folder.is_dir():
        raise ConfigError(f"jobs folder {folder} does not exist (set jobs_dir)")
    jobs = [read_job_file(path, parse_flags) for path in sorted(folder.glob("*.toml"))]
    if not jobs:
        raise ConfigError(f"jobs folder {folder} holds no *.toml job file")
    return jobs


def configured_jobs(
    settings: Settings, parse_flags: FlagParser | None = None
) -> list[JobDefinition]:
    """Every job in the configured jobs folder."""
    return load_jobs(jobs_dir(settings), parse_flags)


def find_job(folder: Path, name: str, parse_flags: FlagParser | None = None) -> JobDefinition:
    """The job called `name` (its file `name.toml`), or a clear error listing the others."""
    path = folder / f"{name}.toml"
    if NAME.match(name) and path.is_file():
        return read_job_file(path, parse_flags)
    known = ", ".join(job.name for job in load_jobs(folder))
    raise BadInputError(f"no job named {name!r} in {folder} (jobs: {known})")
