"""feedctl: fan-out, ranking, caches and feed reads for a communities app."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feedctl.client import AsyncClient, Client

# The one place the version is written: the build reads it from here (pyproject.toml,
# [tool.hatch.version]). Keep this module free of eager imports so `--version` stays cheap.
__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "__version__"]

# The app's entry points, imported at their first use: `import feedctl` (and so the CLI's
# `--version`) loads neither psycopg nor redis.
_LAZY = {"Client", "AsyncClient"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from feedctl import client

        return getattr(client, name)
    raise AttributeError(f"module 'feedctl' has no attribute {name!r}")
