"""One transaction, run again when PostgreSQL aborted it to break a deadlock (40P01) or a
serialization failure (40001): the second line of defence behind one lock order (0037).

Every writer of feed_entry takes its row locks in one order (decision 0037), so such an
abort should not happen between feedctl's own jobs; an app's own writes, or a statement
that does not yet follow the order, still can. The work is redone from the start of its
transaction (nothing of an aborted one is committed), a bounded number of times, each
retry logged and counted by the caller.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import psycopg.errors

T = TypeVar("T")
ATTEMPTS = 3
log = logging.getLogger("feedctl.db")
RETRIED = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


def in_transaction_retrying(
    conn: psycopg.Connection[Any],
    work: Callable[[], T],
    *,
    what: str,
    on_retry: Callable[[], None] | None = None,
    attempts: int = ATTEMPTS,
) -> T:
    """Run `work` inside a transaction on `conn` (a savepoint inside an outer one); when
    PostgreSQL aborts it with 40P01 or 40001, wait a short random time, call `on_retry`
    (the caller counts it) and run it again, at most `attempts` times in all. The last
    failure is raised as it came."""
    for attempt in range(1, attempts + 1):
        try:
            with conn.transaction():
                return work()
        except RETRIED as error:
            if attempt == attempts:
                raise
            log.warning(
                "%s: transaction aborted by PostgreSQL (%s), retrying (%d of %d)",
                what,
                error.sqlstate,
                attempt,
                attempts - 1,
                extra={"sqlstate": error.sqlstate, "attempt": attempt, "work": what},
            )
            if on_retry is not None:
                on_retry()
            time.sleep(random.uniform(0.05, 0.2) * attempt)
    raise AssertionError("unreachable")
