"""``gpumkt login``: the server's URL and an API key, stored in the config file."""

from __future__ import annotations

import os

import click

from gpumkt.cli.base import json_option, main, print_json
from gpumkt.client import Client
from gpumkt.config import config_write, settings_read


@main.command()
@click.option("--url", help="The marketplace's address (default: GPUMKT_URL, the config file, or the local demo).")
@click.option("--key", help="Store this API key instead of asking for a username and password.")
@json_option
@click.pass_context
def login(ctx: click.Context, url: str | None, key: str | None, as_json: bool) -> None:
    """Store the server's URL and an API key in the config file (mode 0600).

    Without --key, asks for a username and password and obtains a token (POST /api/v1/auth/token/)."""
    url = url or settings_read().url
    if key is None:
        username = click.prompt("Username")
        password = click.prompt("Password", hide_input=True)
        with Client(url) as client:
            key = client.token(username, password)
    path = config_write({"url": url, "key": key})
    if as_json:
        print_json({"url": url, "config": str(path)})
    else:
        click.echo(f"Logged in to {url}; key stored in {path}")
    for name in ("GPUMKT_URL", "GPUMKT_KEY"):
        if os.environ.get(name):
            click.echo(f"Note: {name} is set in the environment and overrides the config file.", err=True)
