"""bin/supervise, which keeps `make demo`'s worker and beat running, around real processes.

A real Celery worker (the demo's command line, on the embedded filesystem broker and SQLite: no
servers) killed with SIGKILL is started again, and TERM to supervise stops it, pool included,
for good. Then the rules one at a time, around small shell commands: the back-off doubles to its
cap and starts again after a long run; exit status 0 is not restarted; a stop signal during a
back-off ends supervise at once; a Ctrl-C at the terminal reaches the child once.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.workers import ROOT, VENV_BIN, wait_for

SUPERVISE = ROOT / "bin" / "supervise"
#: The worker's command line in bin/demo (and docker-compose.yml).
DEMO_WORKER = [str(VENV_BIN / "celery"), "-A", "config", "worker", "--loglevel", "INFO", "--concurrency", "2"]


def supervise(
    args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = ROOT, **options
) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, str(SUPERVISE), *args],
            cwd=cwd,
            env=env or dict(os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
            **options,
        )


def text(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


def started(log: Path) -> list[int]:
    """The pids supervise said it started, in order."""
    return [int(pid) for pid in re.findall(r"started pid (\d+)", text(log))]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def demo_env(var_dir: Path) -> dict[str, str]:
    """`make demo`'s environment in ``var_dir``: SQLite, the filesystem broker, a cache on disk."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "DATABASE_", "CELERY_", "CACHE_", "MATCHING_"))
    }
    return {**env, "DJANGO_SETTINGS_MODULE": "config.settings.local", "MARKETPLACE_VAR_DIR": str(var_dir)}


def test_a_killed_worker_is_started_again_and_term_stops_it_for_good(tmp_path):
    log = tmp_path / "supervise.log"
    process = supervise(["--name", "worker", "--backoff-start", "0.5", "--", *DEMO_WORKER], log, demo_env(tmp_path))
    try:
        assert wait_for(lambda: text(log).count(" ready.") == 1, 90, interval=0.2), text(log)
        (first,) = started(log)
        first_pool = children_of(first)
        assert len(first_pool) == 2, first_pool  # prefork, --concurrency 2

        os.kill(first, signal.SIGKILL)

        assert wait_for(lambda: text(log).count(" ready.") == 2, 90, interval=0.2), text(log)
        assert f"pid {first} was killed by SIGKILL" in text(log)
        assert "restarting in 0.5 s" in text(log)
        _, second = started(log)
        assert second != first
        assert not alive(first)
        assert wait_for(lambda: not [pid for pid in first_pool if alive(pid)], 10)  # its pool went with it
        second_pool = children_of(second)
        assert len(second_pool) == 2, second_pool

        process.send_signal(signal.SIGTERM)

        assert process.wait(timeout=60) == 0, text(log)
    finally:
        if process.poll() is None:
            process.kill()
    assert started(log) == [first, second], text(log)  # not started again after TERM
    assert f"got SIGTERM, passing it to pid {second}" in text(log)
    assert "Warm shutdown" in text(log) or "warm shutdown" in text(log), text(log)[-3000:]
    assert not alive(second)
    assert not [pid for pid in second_pool if alive(pid)]


FLAKY = """
n=$(( $(cat count 2>/dev/null || echo 0) + 1 )); echo $n > count; date +%s.%N >> starts
case $n in 5) sleep 1.5; exit 1;; 7) exit 0;; *) exit 1;; esac
"""


def test_the_back_off_doubles_to_its_cap_starts_again_after_a_long_run_and_status_0_ends_it(tmp_path):
    log = tmp_path / "supervise.log"
    args = ["--name", "flaky", "--backoff-start", "0.2", "--backoff-max", "0.8", "--reset-after", "1"]
    process = supervise([*args, "--", "sh", "-c", FLAKY], log, cwd=tmp_path)

    assert process.wait(timeout=30) == 0, text(log)

    delays = [float(d) for d in re.findall(r"restarting in ([\d.]+) s", text(log))]
    assert delays == [0.2, 0.4, 0.8, 0.8, 0.2, 0.4], text(log)  # the 5th run lasted 1.5 s: back to 0.2
    assert len(started(log)) == 7
    assert "exited with status 0" in text(log)
    assert "not restarting it" in text(log)
    starts = [float(t) for t in (tmp_path / "starts").read_text().split()]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    ran = [0, 0, 0, 0, 1.5, 0]
    for gap, delay, run in zip(gaps, delays, ran, strict=True):
        assert delay + run <= gap < delay + run + 1.5, (gaps, delays)


def test_a_stop_signal_during_a_back_off_ends_supervise_at_once(tmp_path):
    log = tmp_path / "supervise.log"
    process = supervise(["--backoff-start", "30", "--", "sh", "-c", "exit 3"], log)
    assert wait_for(lambda: "restarting in 30 s" in text(log), 10), text(log)

    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=3) == 0
    assert len(started(log)) == 1
    assert "exited with status 3" in text(log)
    assert "got SIGTERM while waiting to restart; stopped" in text(log)


#: A child that writes down the signals it gets (even one ignored when it started), then exits 0.
SIGNALS_NOTED = """
import pathlib, signal, time
got = []
for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda signum, frame: got.append(signal.Signals(signum).name))
pathlib.Path("ready").touch()
while not got:
    time.sleep(0.02)
time.sleep(0.5)  # a second signal is noted too
pathlib.Path("got").write_text(" ".join(got))
"""


def supervise_noting_signals(tmp_path: Path, log: Path, *, sigint: signal.Handlers) -> subprocess.Popen:
    """supervise of a :data:`SIGNALS_NOTED` child, in a process group of its own, started with
    SIGINT at ``sigint`` (as a shell starts a job); returns once the child is ready."""
    process = supervise(
        ["--", sys.executable, "-c", SIGNALS_NOTED],
        log,
        cwd=tmp_path,
        process_group=0,
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
    )
    assert wait_for(lambda: (tmp_path / "ready").exists(), 10), text(log)
    return process


def test_a_ctrl_c_at_the_terminal_reaches_the_child_once_and_nothing_restarts(tmp_path):
    log = tmp_path / "supervise.log"
    # A terminal sends Ctrl-C's SIGINT to its foreground process group: supervise's, here its own.
    # A foreground job starts with SIGINT at its default, whatever the test run inherited (pytest
    # started as a background job of a script has it ignored, which supervise would rightly keep).
    process = supervise_noting_signals(tmp_path, log, sigint=signal.SIG_DFL)

    os.killpg(process.pid, signal.SIGINT)

    assert process.wait(timeout=10) == 0, text(log)
    assert (tmp_path / "got").read_text().split() == ["SIGINT"]
    assert len(started(log)) == 1


def test_as_a_background_job_of_a_script_sigint_stays_ignored_and_term_stops_it(tmp_path):
    # bin/demo's jobs: bash starts them with SIGINT ignored and stops them with TERM on Ctrl-C.
    log = tmp_path / "supervise.log"
    process = supervise_noting_signals(tmp_path, log, sigint=signal.SIG_IGN)

    os.killpg(process.pid, signal.SIGINT)
    assert not wait_for(lambda: process.poll() is not None, 1)
    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=10) == 0, text(log)
    assert (tmp_path / "got").read_text().split() == ["SIGTERM"]
    assert "got SIGINT" not in text(log)


def test_a_command_that_cannot_run_is_not_retried(tmp_path):
    log = tmp_path / "supervise.log"
    process = supervise(["--", str(tmp_path / "no-such-program")], log)
    assert process.wait(timeout=10) == 127
    assert "cannot run" in text(log)
    assert started(log) == []
