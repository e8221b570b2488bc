"""Where the CLI finds the server and the key: ``GPUMKT_URL`` and ``GPUMKT_KEY`` from the
environment first, then the config file, ``config.json`` in the user's config directory
(``click.get_app_dir("gpumkt")``: ``$XDG_CONFIG_HOME/gpumkt`` or ``~/.config/gpumkt`` on Linux).
The file holds a secret: it is written with mode 0600, in a directory of mode 0700."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import click

APP_NAME = "gpumkt"
DEFAULT_URL = "http://127.0.0.1:8000"


def config_path() -> Path:
    return Path(click.get_app_dir(APP_NAME)) / "config.json"


@dataclass(frozen=True)
class Settings:
    url: str
    key: str | None


def settings_read(path: Path | None = None) -> Settings:
    """The URL and key in force: each from the environment if set, else the config file, else
    the default URL and no key."""
    stored = config_read(path or config_path())
    url = os.environ.get("GPUMKT_URL") or stored.get("url") or DEFAULT_URL
    key = os.environ.get("GPUMKT_KEY") or stored.get("key") or None
    return Settings(url=url, key=key)


def config_read(path: Path) -> dict[str, str]:
    """The config file's contents ({} if there is none). A file that is not a JSON object is an
    error naming it, not silently ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise click.ClickException(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise click.ClickException(f"{path} should hold a JSON object")
    return data


def config_write(values: dict[str, str], path: Path | None = None) -> Path:
    """Merge ``values`` into the config file, created 0600 (and made 0600 if it was looser)
    before the secret is written into it."""
    path = path or config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    merged = config_read(path) | values
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(merged, handle, indent=2)
        handle.write("\n")
    return path
