"""The one progress protocol every long pipeline reports through, and the one way to stop it.

A pipeline takes `progress: Progress = SILENT` and `stop: threading.Event | None = None`.
It starts each named stage of its work with `progress.phase(name, total)` (the units this
run will do in that stage, when known), calls `progress.advance(done)` with the units
finished since the last call once they are committed, and may show a short line with
`progress.status(text)`. It checks `stop` only between committed chunks, and when `stop`
is set it returns its report with `stopped=True`. The CLI draws bars from these calls; the
jobs runner checks its time on each advance and sets `stop` when the time is up.
"""

from __future__ import annotations

import threading
from typing import Protocol


class Progress(Protocol):
    """Where a long run is: named phases, units done, and a short status line."""

    def phase(self, name: str, total: int | None = None) -> None:
        """A named stage of work starts; `total` is how many units it will do, if known."""

    def advance(self, done: int) -> None:
        """`done` more units are finished (committed) since the last call."""

    def status(self, text: str) -> None:
        """A short line shown next to the current phase."""


class _Silent:
    """A Progress that shows nothing."""

    def phase(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, done: int) -> None:
        pass

    def status(self, text: str) -> None:
        pass


SILENT: Progress = _Silent()


def stopping(stop: threading.Event | None) -> bool:
    """True once a stop was asked for (a pipeline calls this between committed chunks)."""
    return stop is not None and stop.is_set()
