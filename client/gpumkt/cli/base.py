"""The ``gpumkt`` group and what every command shares: the client from the settings in force, the
errors as Click shows them, ``--json``, and Rich tables."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from gpumkt import __version__
from gpumkt.client import Client
from gpumkt.config import settings_read
from gpumkt.errors import GpumktError

#: ``request submit --wait`` ended without a full match.
EXIT_NOT_MATCHED = 3
LATENCY_CLASSES = ("realtime", "interactive", "standard", "batch")
#: GPUs per node or per replica: the sizes the API takes (``NODE_SIZES`` on the server).
NODE_SIZES = click.Choice(["1", "2", "4", "8"])


def node_size(value: str | None) -> int | None:
    """A ``NODE_SIZES`` choice as the number the API wants (None: not given)."""
    return None if value is None else int(value)


class ApiFailure(click.ClickException):
    """An SDK error as Click shows errors: ``Error: …`` on stderr, exit code 1."""

    exit_code = 1


class Group(click.Group):
    """Turns the SDK's errors, raised by any command, into ``ApiFailure``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GpumktError as exc:
            raise ApiFailure(str(exc)) from exc


def stdout() -> Console:
    return Console(highlight=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def client_of(ctx: click.Context) -> Client:
    """The client for the settings in force (environment, then config file), made once."""
    if "client" not in ctx.meta:
        settings = settings_read()
        ctx.meta["client"] = ctx.with_resource(Client(settings.url, settings.key))
    client: Client = ctx.meta["client"]
    return client


def json_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--json``: print the API's JSON instead of a table (lists: every page's results)."""
    return click.option("--json", "as_json", is_flag=True, help="Print the API's JSON, for scripts.")(command)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def utc_minute(moment: datetime) -> str:
    """A time as every table writes it: to the minute, in UTC, marked Z."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}Z"


def or_dash(value: object) -> object:
    """A cell's value, or "—" for a figure the API gave as null (or empty)."""
    return "—" if value in (None, "") else value


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    grid = Table(title=title)
    for column in columns:
        grid.add_column(column, overflow="fold")  # never cut a value (a voucher code) short
    for row in rows:
        grid.add_row(*("" if value is None else str(value) for value in row))
    stdout().print(grid)


@click.group(cls=Group)
@click.version_option(__version__, prog_name="gpumkt")
def main() -> None:
    """The GPU compute marketplace from the command line.

    The server and key come from GPUMKT_URL and GPUMKT_KEY if set, else from the config file
    that `gpumkt login` writes."""
