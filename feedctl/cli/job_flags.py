"""A job's flags, parsed by its own Click command: a job file takes exactly the flags its
CLI command takes, with the same spelling, types, limits and messages.

Jobs may use only the options that make sense unattended (`JobCommand.options`); anything
else the command accepts (`--follow`, `--dry-run`, global options) is refused by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer

from feedctl.errors import BadInputError


def parse_job_flags(command: str, flags: Sequence[str]) -> dict[str, Any]:
    """The options a job's flags give, by parameter name (only the flags given)."""
    from feedctl.cli.app import app  # the command tree; imported here to avoid a cycle
    from feedctl.jobs.commands import COMMANDS

    click_command: Any = typer.main.get_command(app)
    for word in command.split():
        click_command = click_command.commands[word]
    try:
        ctx = click_command.make_context(f"feedctl {command}", list(flags))
    except Exception as exc:  # Click's usage and parameter errors carry their own message
        message = getattr(exc, "format_message", None)
        if message is None:
            raise
        raise BadInputError(f"`{command}` flags: {message()}") from None
    leftover = [*getattr(ctx, "_protected_args", ()), *ctx.args]  # a subcommand, arguments
    if leftover:
        raise BadInputError(f"`{command}` takes no argument {leftover[0]!r} in a job")
    given = [name for name in ctx.params if _from_command_line(ctx, name)]
    allowed = COMMANDS[command].options
    refused = [name for name in given if name not in allowed]
    if refused:
        spelled = {param.name: param.opts[0] for param in click_command.params}
        flag = spelled[refused[0]]
        known = ", ".join(sorted(spelled[name] for name in allowed)) or "none"
        raise BadInputError(f"flag {flag} is not one `{command}` takes in a job ({known})")
    return {name: ctx.params[name] for name in given}


def _from_command_line(ctx: Any, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"
