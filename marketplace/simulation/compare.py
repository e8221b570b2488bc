"""The same script under every policy, each on its own fresh database, side by side.

Each policy runs in a child process (``manage.py migrate`` then ``manage.py simulate --policy P``)
whose environment points the database, cache, broker and var directory at a temporary folder of
its own: a fresh SQLite file, an in-process cache and the in-memory broker, so the runs share
nothing, cannot see each other's rows, and can run in parallel. The children report progress
through files that this process draws as one bar.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from marketplace.simulation.progress import ProgressBar, ProgressFile
from marketplace.simulation.runner import SimulationConfig


class SimulationFailed(RuntimeError):
    """A child run exited with an error; its stderr is in the message."""


@dataclass
class Child:
    policy: str
    folder: Path
    process: subprocess.Popen | None = None

    @property
    def figures(self) -> Path:
        return self.folder / "figures.json"

    @property
    def progress(self) -> Path:
        return self.folder / "progress"


def child_env(folder: Path) -> dict[str, str]:
    """The environment of a child run: everything it writes lives under ``folder``."""
    return {
        **os.environ,
        "MARKETPLACE_VAR_DIR": str(folder),
        "DATABASE_URL": f"sqlite:///{folder / 'market.sqlite3'}",
        "CACHE_URL": "locmem://",
        "CELERY_BROKER_URL": "memory://",  # commits still enqueue rounds; nobody consumes them
        "LOG_LEVEL": "ERROR",
        "DJANGO_DEBUG": "0",
    }


def child_args(config: SimulationConfig, policy: str, child: Child) -> list[str]:
    manage = str(Path(settings.BASE_DIR) / "manage.py")
    return [
        *(sys.executable, manage, "simulate", "--policy", policy),
        *("--seed", str(config.seed), "--days", repr(config.days), "--scale", repr(config.scale)),
        *("--step-minutes", str(config.step_minutes), "--start", config.start.isoformat()),
        *("--scenario", config.scenario),
        *("--json", str(child.figures), "--progress-file", str(child.progress)),
    ]


def policies_compare(*, config: SimulationConfig, policies, jobs: int = 3, show_progress: bool = True) -> dict:
    """Figures per policy (in ``policies`` order: ``variants.VARIANTS`` names) for ``config``
    replayed under each one.

    Precondition: ``config.start`` is set (every run must start at the same instant). Raises
    :class:`SimulationFailed` if a run fails.
    """
    if config.start is None:
        raise ValueError("a comparison needs a fixed start")
    with tempfile.TemporaryDirectory(prefix="simulate-") as tmp:
        children = [Child(policy, Path(tmp) / policy) for policy in policies]
        _run_all(children, config, max(1, jobs), ProgressBar(label="simulate ") if show_progress else None)
        return {c.policy: json.loads(c.figures.read_text(encoding="utf-8")) for c in children}


def _run_all(children: list[Child], config: SimulationConfig, jobs: int, bar: ProgressBar | None) -> None:
    """At most ``jobs`` children at a time; if one fails (or we are interrupted) the others stop."""
    waiting, running = list(children), []
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                running.append(_start(waiting.pop(0), config))
            for child in [c for c in running if c.process.poll() is not None]:
                running.remove(child)
                _check(child)
            if bar is not None:
                _draw(bar, children)
            time.sleep(0.2)
    finally:
        for child in running:
            child.process.kill()
            child.process.wait()
        if bar is not None:
            bar.close()


def _start(child: Child, config: SimulationConfig) -> Child:
    """Migrate the child's fresh database, then start its run (non-blocking)."""
    child.folder.mkdir(parents=True)
    env = child_env(child.folder)
    manage = str(Path(settings.BASE_DIR) / "manage.py")
    migrate = subprocess.run(  # noqa: S603 - our own interpreter and manage.py, no shell
        [sys.executable, manage, "migrate", "--noinput", "-v0"], env=env, capture_output=True, text=True
    )
    if migrate.returncode:
        raise SimulationFailed(f"{child.policy}: migrate failed:\n{migrate.stderr}")
    child.process = subprocess.Popen(  # noqa: S603
        child_args(config, child.policy, child),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(child.folder / "stderr").open("w"),
    )
    return child


def _check(child: Child) -> None:
    if child.process.returncode or not child.figures.exists():
        tail = (child.folder / "stderr").read_text(encoding="utf-8")[-4000:]
        raise SimulationFailed(f"{child.policy}: simulate exited with {child.process.returncode}:\n{tail}")


def _draw(bar: ProgressBar, children: list[Child]) -> None:
    states = [(c.policy, *ProgressFile.read(c.progress)) for c in children]
    done = sum(fraction for _, fraction, _ in states)
    note = "  ".join(f"{policy} {fraction:.0%}" for policy, fraction, _ in states)
    bar(round(done * 1000), 1000 * len(children), note)
