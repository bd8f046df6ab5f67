"""A Progress for tests: records every call, and can act after each advance (set a stop
event, stop a server) to stop a pipeline at a chunk boundary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class RecordingProgress:
    """Records phases, advances and status lines; `on_advance(self)` runs after each advance."""

    def __init__(self, on_advance: Callable[[RecordingProgress], Any] | None = None) -> None:
        self.on_advance = on_advance
        self.calls: list[tuple[str, Any, ...]] = []
        self.current: str | None = None
        self.advances: dict[str | None, int] = {}  # advance calls per phase
        self.done: dict[str | None, int] = {}  # units done per phase

    def phase(self, name: str, total: int | None = None) -> None:
        self.calls.append(("phase", name, total))
        self.current = name

    def advance(self, done: int) -> None:
        self.calls.append(("advance", done))
        self.advances[self.current] = self.advances.get(self.current, 0) + 1
        self.done[self.current] = self.done.get(self.current, 0) + done
        if self.on_advance is not None:
            self.on_advance(self)

    def status(self, text: str) -> None:
        self.calls.append(("status", text))

    def phases(self) -> list[str]:
        return [call[1] for call in self.calls if call[0] == "phase"]
