"""Settings: flag > environment (FEEDCTL_*) > feedctl.toml > default.

The file is a flat TOML table whose keys are the field names of `Settings`.
Every key has an environment variable: `FEEDCTL_` and the key in capitals.
The file is `--config`, else $FEEDCTL_CONFIG, else the first that exists of
./feedctl.toml, $XDG_CONFIG_HOME/feedctl/feedctl.toml and /etc/feedctl/feedctl.toml.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from feedctl.durations import parse_duration
from feedctl.errors import ConfigError, FeedctlError

ENV_PREFIX = "FEEDCTL_"
CONFIG_ENV = "FEEDCTL_CONFIG"
DEFAULT_CONFIG_FILE = "feedctl.toml"
# Searched last, after the current directory and the user's XDG config folder.
SYSTEM_CONFIG_FILES: tuple[Path, ...] = (Path("/etc/feedctl/feedctl.toml"),)
# How many hash partitions of user_id feed_entry gets at `migrate up` (docs/scaling.md).
DEFAULT_FEED_PARTITIONS = 16


def default_home() -> Path:
    """The user's XDG data directory for feedctl (embedded servers live there)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "feedctl"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything feedctl reads from the outside world, validated."""

    # The file the settings were read from, None when there was none. Not a key: it is
    # never read from a file or a variable.
    config_file: Path | None = dataclasses.field(default=None, compare=False, kw_only=True)
    database_url: str | None = None
    redis_url: str | None = None
    pushgateway_url: str | None = None
    home: Path = dataclasses.field(default_factory=default_home)
    redis_key_prefix: str = "feedctl:"
    feed_cap: int = 5000
    heuristic: Path | None = None
    active_window_days: int = 7
    batch_size: int = 1_000
    # Communities with more members than this are pulled: their posts are not written into
    # members' feeds, reads merge them in (docs/decisions/0034).
    pull_threshold: int = 100_000
    # Cursor signing secrets: the first signs, every one verifies (for rotation). Empty: the
    # random secret `migrate up` stored in PostgreSQL.
    cursor_secret: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    jobs_dir: Path | None = None
    # The bearer token `feedctl serve` requires on its rebuild routes (at least 16
    # characters). Unset: those routes are refused.
    api_token: str | None = dataclasses.field(default=None, repr=False)
    # How long a post stays in feeds: a duration (30d, 12h, 2w), or 0 to keep everything.
    feed_retention: str = "30d"
    # How many hash partitions of user_id `migrate up` gives feed_entry when it creates
    # them (docs/scaling.md: changing it later is a maintenance operation).
    feed_partitions: int = DEFAULT_FEED_PARTITIONS
    # How long, in milliseconds, a reader keeps PostgreSQL's word on which cached feeds may
    # be served from Redis alone (docs/decisions/0029): also the longest a deletion or a
    # failed cache write can go unseen by such pages. 0: every cached page is checked
    # against PostgreSQL.
    cache_state_ms: int = 200

    @property
    def retention(self) -> timedelta | None:
        """The retention window; None keeps every post."""
        return parse_retention(self.feed_retention)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name != "config_file"}
_INT_MINIMUMS = {
    "feed_cap": 1,
    "active_window_days": 0,
    "batch_size": 1,
    "feed_partitions": 1,
    "pull_threshold": 1,
    "cache_state_ms": 0,
}
_INT_MAXIMUMS = {"feed_partitions": 1024}
MIN_SECRET_CHARS = 16
# The secret early versions signed every install's cursors with: public, so never accepted.
RETIRED_SECRET = "feedctl-default-cursor-secret"


def parse_retention(text: str) -> timedelta | None:
    """A retention setting: `0` keeps everything, otherwise a duration such as 30d."""
    if text.strip() == "0":
        return None
    return parse_duration(text)


def _secrets(where: str, value: Any, *, typed: bool) -> tuple[str, ...]:
    """One secret or a list of them (TOML), or comma-separated text (environment, flag)."""
    if isinstance(value, str):
        items: list[Any] = [value] if typed else [s.strip() for s in value.split(",")]
    elif typed and isinstance(value, list):
        items = value
    else:
        raise ConfigError(f"{where}: expected a secret or a list of secrets, got {value!r}")
    if items == [""]:
        return ()
    for item in items:
        if not isinstance(item, str) or len(item) < MIN_SECRET_CHARS:
            raise ConfigError(
                f"{where}: each secret must be text of at least {MIN_SECRET_CHARS} characters"
            )
        if item == RETIRED_SECRET:
            raise ConfigError(f"{where}: the old built-in secret is public and not accepted")
    return tuple(items)


def _coerce(key: str, value: Any, source: str, *, typed: bool = False) -> Any:
    """Turn a raw value into the field's type, or fail clearly.

    `typed` values come from TOML and must already have the right type; environment
    variables and flags arrive as text and are parsed.
    """
    kind = _FIELDS[key].type
    where = f"{key} (from {source})"
    if kind == "tuple[str, ...]":
        return _secrets(where, value, typed=typed)
    if key == "feed_retention":
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a duration such as 30d, or 0, got {value!r}")
        text = str(value)
        try:
            parse_retention(text)
        except FeedctlError as exc:
            raise ConfigError(f"{where}: {exc.message}") from None
        return text
    if kind == "int":
        if isinstance(value, bool | float) or (typed and not isinstance(value, int)):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}") from None
        minimum = _INT_MINIMUMS.get(key)
        if minimum is not None and number < minimum:
            raise ConfigError(f"{where}: must be at least {minimum}, got {number}")
        maximum = _INT_MAXIMUMS.get(key)
        if maximum is not None and number > maximum:
            raise ConfigError(f"{where}: must be at most {maximum}, got {number}")
        return number
    if kind in ("Path", "Path | None"):
        if not isinstance(value, str | os.PathLike) or str(value) == "":
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value).expanduser()
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if kind == "str | None" and value == "":
        return None
    if key == "redis_key_prefix" and ("{" in value or "}" in value):
        # each feed key is its own hash tag: its fence and details go to its slot
        raise ConfigError(f"{where}: must not contain '{{' or '}}', got {value!r}")
    if key == "api_token" and len(value) < MIN_SECRET_CHARS:
        raise ConfigError(f"{where}: the token must be at least {MIN_SECRET_CHARS} characters")
    return value


def read_config_file(path: Path) -> dict[str, Any]:
    """Read and validate a feedctl.toml; unknown keys and bad types are errors."""
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _FIELDS:
            known = ", ".join(sorted(_FIELDS))
            raise ConfigError(f"config file {path}: unknown key {key!r} (known keys: {known})")
        values[key] = _coerce(key, value, str(path), typed=True)
    return values


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in _FIELDS:
        name = ENV_PREFIX + key.upper()
        if name in environ:
            values[key] = _coerce(key, environ[name], name)
    return values


def config_search_path(environ: Mapping[str, str]) -> list[Path]:
    """Where the file is looked for when neither --config nor $FEEDCTL_CONFIG names one."""
    xdg = environ.get("XDG_CONFIG_HOME", "")
    user = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"
    return [Path(DEFAULT_CONFIG_FILE), user / "feedctl" / DEFAULT_CONFIG_FILE, *SYSTEM_CONFIG_FILES]


def find_config_file(config_path: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The file to read: the one named (which must exist), else the first one found."""
    explicit = config_path or (Path(environ[CONFIG_ENV]) if environ.get(CONFIG_ENV) else None)
    if explicit is not None:
        return explicit
    return next((path for path in config_search_path(environ) if path.is_file()), None)


def load_settings(
    config_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve settings from flags (`overrides`), environment, file and defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = find_config_file(config_path, env)
    if config_file is not None:
        values.update(read_config_file(config_file))
    values.update(_from_environment(env))
    for key, value in (overrides or {}).items():
        if key not in _FIELDS:
            raise ConfigError(f"unknown setting {key!r}")
        if value is not None:
            values[key] = _coerce(key, value, "command line")
    found = None if config_file is None else config_file.absolute()
    return Settings(**values, config_file=found)
