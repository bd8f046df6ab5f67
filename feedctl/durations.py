"""Parsing durations such as `7d`, `12h` or `30m` given on the command line."""

from __future__ import annotations

import re
from datetime import timedelta

from feedctl.errors import BadInputError

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not match:
        raise BadInputError(f"duration {text!r} is not understood: use e.g. 30m, 12h, 7d or 2w")
    try:
        return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:
        raise BadInputError(f"duration {text!r} is too long") from None
