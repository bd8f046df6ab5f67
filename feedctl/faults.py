"""Named points where a test can kill the process for real (SIGKILL), to prove that a job
stopped anywhere and run again ends in the same state.

Set FEEDCTL_FAULT_KILL_AT to `point` (the first time it is reached) or `point@N` (the
N-th time). Unset, a checkpoint costs one dictionary lookup.
"""

from __future__ import annotations

import collections
import os
import signal

KILL_AT_ENV = "FEEDCTL_FAULT_KILL_AT"
_reached: collections.Counter[str] = collections.Counter()


def checkpoint(name: str) -> None:
    target = os.environ.get(KILL_AT_ENV)
    if not target:
        return
    point, _, nth = target.partition("@")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
