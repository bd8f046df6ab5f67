"""Work done on a second thread alongside the caller: a bounded queue and one worker.

The caller `put`s items while it prepares the next ones (reads PostgreSQL); the worker
handles them in order (writes Redis). An exception in the worker is handed to the caller:
raised at its next `put`, or when the block ends, after the worker has drained what was
queued without handling it. At most `depth` items wait, so memory stays bounded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class Alongside(Generic[T]):
    """A worker thread fed through a bounded queue; see `alongside`."""

    def __init__(self, handle: Callable[[T], None], depth: int, name: str) -> None:
        self.handle = handle
        self.waiting: queue.Queue[tuple[T] | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def put(self, item: T) -> None:
        """Queue an item (waits while `depth` items wait); raises the worker's error."""
        self.raise_failure()
        self.waiting.put((item,))

    def raise_failure(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while (entry := self.waiting.get()) is not None:
            if self.error is not None:
                continue  # drain: the caller stops at its next put
            try:
                self.handle(entry[0])
            except BaseException as exc:  # handed to the caller's thread
                self.error = exc


@contextmanager
def alongside(
    handle: Callable[[T], None], *, depth: int = 1, name: str = "feedctl-alongside"
) -> Iterator[Alongside[T]]:
    """Run `handle` on a worker thread for every item put; leaving the block waits for the
    queued items and raises the worker's error, unless the block itself raised."""
    worker = Alongside(handle, depth, name)
    worker.thread.start()
    try:
        yield worker
    finally:
        worker.waiting.put(None)
        worker.thread.join()
    worker.raise_failure()
