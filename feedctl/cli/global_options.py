"""Global options, accepted before the command and after it with the same meaning.

The root callback declares them once (`feedctl --json feed user 3`). `FeedctlGroup` copies
those declarations onto every command and sub-group below it (`feedctl feed user 3 --json`),
so each command's `--help` lists them, and a value given after the command wins over one
given before it.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
import typer.core

from feedctl.cli.help_text import reflow_help
from feedctl.cli.state import state_of

# Parameter names of the root callback that every command accepts too.
GLOBAL_NAMES = ("config", "database_url", "redis_url", "cap", "json_output", "verbose")
_SETTINGS = {"database_url": "database_url", "redis_url": "redis_url", "cap": "feed_cap"}
PANEL = "Global options"


def apply_global_options(ctx: typer.Context, values: dict[str, Any]) -> None:
    """Record the global options given at one level; unset ones leave earlier values alone."""
    state = state_of(ctx)
    if values.get("config") is not None:
        state.config_path = Path(values["config"])
    for name, setting in _SETTINGS.items():
        if values.get(name) is not None:
            state.overrides[setting] = values[name]
    state.json = state.json or bool(values.get("json_output"))
    state.verbose = state.verbose or bool(values.get("verbose"))
    state.forget_settings()


class FeedctlGroup(typer.core.TyperGroup):
    """The root group: gives every command below it the global options, and reflows the
    help texts of all of them (see help_text.py)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        shared = [p for p in self.params if p.name in GLOBAL_NAMES]
        reflow_help(self)
        for command in _descendants(self):
            _accept_global_options(command, shared)
            reflow_help(command)


def _descendants(group: typer.core.TyperGroup) -> Iterator[Any]:
    for command in group.commands.values():
        yield command
        if isinstance(command, typer.core.TyperGroup):
            yield from _descendants(command)


def _accept_global_options(command: Any, shared: list[Any]) -> None:
    taken = {p.name for p in command.params}
    for param in shared:
        if param.name not in taken:
            clone = copy.copy(param)
            clone.rich_help_panel = PANEL
            command.params.append(clone)
    command.invoke = _with_global_options(command.invoke)


def _with_global_options(invoke: Callable[[typer.Context], Any]) -> Callable[..., Any]:
    """Take the global options out of the parsed parameters before the command runs."""

    @functools.wraps(invoke)
    def run(ctx: typer.Context) -> Any:
        values = {name: ctx.params.pop(name, None) for name in GLOBAL_NAMES}
        apply_global_options(ctx, values)
        return invoke(ctx)

    return run
