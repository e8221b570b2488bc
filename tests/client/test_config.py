"""Where the CLI finds its server and key: the environment before the config file, which
``login --key`` writes with mode 0600."""

from __future__ import annotations

import json
import os
import stat

import click
from click.testing import CliRunner

from gpumkt.cli import main
from gpumkt.config import DEFAULT_URL, config_path, config_write, settings_read


def run(args, env, expect=0):
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == expect, (result.stdout, result.stderr)
    return result


def test_login_with_a_key_stores_url_and_key_readable_by_the_user_only(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path), "GPUMKT_URL": None, "GPUMKT_KEY": None}
    shown = run(["login", "--url", "https://market.example", "--key", "s3cret", "--json"], env)
    path = tmp_path / "gpumkt" / "config.json"
    assert json.loads(shown.stdout) == {"url": "https://market.example", "config": str(path)}
    assert json.loads(path.read_text()) == {"url": "https://market.example", "key": "s3cret"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_a_config_file_left_readable_by_others_is_made_private_when_written(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = config_path()
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    path.chmod(0o644)
    config_write({"key": "s3cret"})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_the_environment_comes_before_the_config_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("GPUMKT_URL", raising=False)
    monkeypatch.delenv("GPUMKT_KEY", raising=False)
    assert (settings_read().url, settings_read().key) == (DEFAULT_URL, None)
    config_write({"url": "https://from-file.example", "key": "file-key"})
    assert (settings_read().url, settings_read().key) == ("https://from-file.example", "file-key")
    monkeypatch.setenv("GPUMKT_URL", "https://from-env.example")
    monkeypatch.setenv("GPUMKT_KEY", "env-key")
    assert (settings_read().url, settings_read().key) == ("https://from-env.example", "env-key")


def test_a_broken_config_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "gpumkt" / "config.json"
    path.parent.mkdir()
    path.write_text("{not json")
    refused = run(["requests"], {"XDG_CONFIG_HOME": str(tmp_path), "GPUMKT_URL": None, "GPUMKT_KEY": None}, expect=1)
    assert str(path) in refused.stderr


def test_an_unreachable_server_exits_1_saying_so(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path), "GPUMKT_URL": "http://127.0.0.1:9", "GPUMKT_KEY": "k"}
    refused = run(["capacity", "--origin", "shanghai"], env, expect=1)
    assert "127.0.0.1:9" in refused.stderr


def leaf_commands(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from leaf_commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_every_command_takes_json():
    commands = dict(leaf_commands(main))
    assert len(commands) == 18  # 13, then prices, price-history, llm-models, listings guidance and serve
    without = [name for name, command in commands.items() if not any("--json" in p.opts for p in command.params)]
    assert without == []
