"""Named points where a test can kill the process for real (SIGKILL), to prove that a job
stopped anywhere and run again ends in the same state, or hold it for a while, to widen a
race window (the cache race test holds writers between their read of PostgreSQL and their
write of Redis).

Set FEEDCTL_FAULT_KILL_AT to `point` (the first time it is reached) or `point@N` (the
N-th time); FEEDCTL_FAULT_DELAY to `point=SECONDS[,point=SECONDS...]` (every time, a random
wait of up to SECONDS). Unset, a checkpoint costs two dictionary lookups.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import time

KILL_AT_ENV = "FEEDCTL_FAULT_KILL_AT"
DELAY_ENV = "FEEDCTL_FAULT_DELAY"
_reached: collections.Counter[str] = collections.Counter()


def checkpoint(name: str) -> None:
    delays = os.environ.get(DELAY_ENV)
    if delays:
        for item in delays.split(","):
            point, _, seconds = item.partition("=")
            if point == name:
                time.sleep(random.uniform(0, float(seconds)))
    target = os.environ.get(KILL_AT_ENV)
    if not target:
        return
    point, _, nth = target.partition("@")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
