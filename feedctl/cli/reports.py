"""Rendering count reports as a small table."""

from __future__ import annotations

import dataclasses
from typing import Any

from rich.table import Table

from feedctl.cli.state import stdout


def render_counts(title: str, report: Any) -> None:
    """One row per field of a report dataclass (lists, such as samples, are left out)."""
    table = Table(title=title, show_header=False)
    for field in dataclasses.fields(report):
        if isinstance(getattr(report, field.name), list):
            continue
        table.add_row(field.name.replace("_", " "), str(getattr(report, field.name)))
    stdout.print(table)
