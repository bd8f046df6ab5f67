"""Fanning out a whole backlog in tests, on a server others use too.

Fan-out reads only events below the snapshot's xmin (docs/decisions/0002): a transaction
open elsewhere on a shared server (another database, another developer's job) holds
events back until it ends. Tests that need every event applied wait for that.
"""

from __future__ import annotations

import time

from feedctl.context import Context
from feedctl.pipelines.fanout.run import FanoutReport, measure_lag, run_fanout


def fan_out_everything(ctx: Context, timeout: float = 60.0) -> FanoutReport:
    """Run fan-out until no event is left behind (or fail after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    report = run_fanout(ctx)
    while measure_lag(ctx)[0] > 0:
        if time.monotonic() > deadline:
            raise AssertionError("events stayed behind a transaction open on the server")
        time.sleep(0.05)
        more = run_fanout(ctx)
        report.events += more.events
        report.entries_written += more.entries_written
        report.redis_failures += more.redis_failures
    return report
