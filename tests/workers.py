"""Real Celery worker (and beat) processes on the test database, for the end-to-end and fault tests;
the commands docker-compose.yml runs, started outside Docker (``compose_start``); and a redis-server
of a test's own (``PrivateRedis``) to take away from them.

A process started here talks to the same PostgreSQL test database as the test (``DATABASE_URL`` is
rewritten to it) and to the broker the test names; its output goes to a log file that failing
assertions show.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis
import yaml
from django.core.cache import cache
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
#: ``${NAME}``, ``${NAME:-default}`` or ``${NAME:?message}`` in docker-compose.yml.
_COMPOSE_VARIABLE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def database_url_of_test_db() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def service_env(broker_url: str, **extra: str) -> dict[str, str]:
    """Environment for a subprocess of the project on the test database and ``broker_url``."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url_of_test_db(),
        "CELERY_BROKER_URL": broker_url,
        **extra,
    }


def celery_start(
    args: list[str], *, broker_url: str, log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``celery -A config <args>`` (``worker …`` or ``beat …``), logging to ``log_path``."""
    log = log_path.open("a")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *args],
            cwd=ROOT,
            env=service_env(broker_url, **(env or {})),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()  # the child holds its own copy of the descriptor


def worker_start(
    *,
    broker_url: str,
    log_path: Path,
    name: str,
    pool: str = "solo",
    concurrency: int = 1,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """A worker named ``name``; ``pool="prefork"`` is needed where time limits must fire."""
    args = ["worker", "--pool", pool, "--concurrency", str(concurrency), "--loglevel", "INFO"]
    args += ["--hostname", f"{name}-{os.getpid()}@%h", "--without-mingle", "--without-gossip"]
    return celery_start(args, broker_url=broker_url, log_path=log_path, env=env)


def compose_services() -> dict:
    """The services of docker-compose.yml, with its anchors and merge keys resolved."""
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def compose_env(service: str, **overrides: str) -> dict[str, str]:
    """The environment docker-compose.yml gives ``service``: each ``${NAME:-default}`` at its default,
    then ``overrides`` (the test's servers in place of the stack's ``postgres`` and ``redis``, the
    secret). A variable compose requires (``${NAME:?…}``) and no override gives is an error."""

    def default(name: str):
        def substitute(match: re.Match) -> str:
            variable, kind, word = match.groups()
            if kind == "-":
                return word
            raise KeyError(f"docker-compose.yml's {service} needs {variable} (for {name}): pass it as an override")

        return substitute

    environment = compose_services()[service].get("environment", {})
    env = {
        name: _COMPOSE_VARIABLE.sub(default(name), str(value))
        for name, value in environment.items()
        if name not in overrides
    }
    return {**env, **overrides}


def compose_process_env(service: str, env: dict[str, str]) -> dict[str, str]:
    """A process's environment as ``service``'s container has it: compose's environment with ``env``
    over it (``compose_env``), the venv's executables first on PATH (the image installs them on its
    own) and nothing of this test run's settings."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "DATABASE_", "CELERY_", "CACHE_", "MATCHING_", "KOMBU_"))
    }
    return {**inherited, **compose_env(service, **env), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}


#: The image's directory for files a process writes (beat's schedule), ``MARKETPLACE_VAR_DIR`` there.
IMAGE_VAR_DIR = "/app/var"


def compose_start(service: str, *, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``service``'s ``command`` from docker-compose.yml as its container runs it: from the
    project's directory (the image's WORKDIR), in ``compose_process_env``. The command is the one
    written there; only a path under the image's ``/app/var`` (beat's ``--schedule``) is moved to
    ``env["MARKETPLACE_VAR_DIR"]``, as the variable moves the default. Logs to ``log_path``."""
    command = compose_services()[service]["command"]
    assert isinstance(command, list), f"{service}'s command should be a list (exec form), not {command!r}"
    var_dir = env.get("MARKETPLACE_VAR_DIR")
    if var_dir:
        command = [var_dir + word[len(IMAGE_VAR_DIR) :] if word.startswith(IMAGE_VAR_DIR) else word for word in command]
    log = log_path.open("a")
    try:
        return subprocess.Popen(
            command, cwd=ROOT, env=compose_process_env(service, env), stdout=log, stderr=subprocess.STDOUT
        )
    finally:
        log.close()


def sessions_blocked_by(pid: int) -> int:
    """How many PostgreSQL sessions wait on a lock that session ``pid`` holds."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [pid])
        return cursor.fetchone()[0]


def process_stop(process: subprocess.Popen, seconds: float = 30) -> None:
    """Stop a process started here: TERM, then KILL if it has not gone within ``seconds``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=seconds)


def wait_for(predicate, seconds: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def broker_reset(broker_url: str) -> None:
    """Forget what earlier tests left behind: queued messages, messages a killed worker held
    unacknowledged, and the cache's round-pending keys. Such a key outlives a purged queue by up
    to a minute, and while it lives no commit enqueues its shard's round."""
    from config.celery_app import app
    from marketplace.services import reference_read
    from marketplace.services.triggers import round_pending_key

    app.control.purge()
    redis.Redis.from_url(broker_url).delete("unacked", "unacked_index", "unacked_mutex")
    cache.delete_many([round_pending_key(model["code"]) for model in reference_read()["gpu_models"]])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of one test on a free loopback port, without persistence: killed, frozen
    and restarted (empty, on the same port) at will. Never the shared Redis."""

    def __init__(self, binary: str, log_path: Path):
        self.binary, self.log_path, self.port = binary, log_path, free_port()
        self.process: subprocess.Popen | None = None
        self.frozen = False

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        assert wait_for(self.answers, 10), self.log_path.read_text()

    def answers(self) -> bool:
        try:
            return redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5).ping()
        except redis.RedisError:
            return False

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nothing ever answers them."""
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            if self.frozen:
                self.thaw()
            self.kill()
