"""A click command class whose every failure is one line and an exit code.

``atool.cli`` already does this for errors raised inside commands run through
the group. This class does it for the command on its own as well (tests,
embedding) and, in both cases, for click's own usage errors (a missing
option, a bad value), which click otherwise prints as a three-line usage
block: bad input is always ``atool: error: ...`` and exit 2.
"""

from __future__ import annotations

from typing import Any

import click

from atool.core.errors import AtoolError


class OneLineError(click.ClickException):
    """A usage error shown as a single line (exit 2)."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"atool: error: {self.format_message()}", err=True)


class OneLineCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise OneLineError(exc.format_message()) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AtoolError as exc:
            click.echo(f"atool: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            click.echo(f"atool: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
            ctx.exit(1)
