"""`--rate-limit ROWS_PER_S`: pace a long job so a production database keeps breathing."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from feedctl.errors import BadInputError

Clock = Callable[[], float]
Sleep = Callable[[float], object]


def check_rate(rows_per_second: float | None) -> float | None:
    """A rate limit as given on the command line: None (no limit) or a positive number."""
    if rows_per_second is None:
        return None
    if not math.isfinite(rows_per_second) or rows_per_second <= 0:
        raise BadInputError(
            f"--rate-limit must be a positive number of rows per second, got {rows_per_second!r}"
        )
    return float(rows_per_second)


class Throttle:
    """Sleeps after each chunk until the chunk has taken rows / rate seconds.

    A period slower than the limit earns no credit: the job never bursts above the rate
    to make up for time spent elsewhere (waiting for a lock, writing Redis).
    """

    def __init__(
        self, rows_per_second: float | None, sleep: Sleep, clock: Clock = time.monotonic
    ) -> None:
        self.rate = check_rate(rows_per_second)
        self.sleep = sleep
        self.clock = clock
        self.mark = clock()
        self.slept = 0.0

    def restart(self) -> None:
        """Work (re)starts now: time spent before earns no credit."""
        self.mark = self.clock()

    def pace(self, rows: int) -> float:
        """Count `rows` just written; sleep as long as the limit asks. Returns the seconds."""
        now = self.clock()
        if self.rate is None:
            self.mark = now
            return 0.0
        due = self.mark + rows / self.rate
        wait = max(0.0, due - now)
        if wait > 0:
            self.sleep(wait)
            self.slept += wait
        self.mark = max(now, due)
        return wait

    def chunk_rows(self, wanted: int) -> int:
        """Rows per chunk: at most about one second's worth under the limit."""
        if self.rate is None:
            return wanted
        return max(1, min(wanted, math.ceil(self.rate)))
