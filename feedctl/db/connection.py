"""Opening PostgreSQL connections, with failures turned into clear errors."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from feedctl.errors import ConfigError, ServiceUnavailableError


def describe(url: str) -> str:
    """A URL's host, port and database, without credentials, for messages."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable database URL>"
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    return f"{host}:{port}/{parts.get('dbname') or ''}"


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """Open one connection or raise ServiceUnavailableError naming where it failed."""
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"database URL is malformed: {exc}") from None
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "no answer"
        raise ServiceUnavailableError(
            f"cannot reach PostgreSQL at {describe(url)}: {reason}"
        ) from exc
