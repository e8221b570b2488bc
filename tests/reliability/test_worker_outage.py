"""The worker survives Redis going away.

kombu 5.7's Redis transport killed the Celery worker when Redis went away while the worker held
unacknowledged messages (every running round: tasks acknowledge late): an ``AttributeError`` on a
channel detached from its connection, which Celery treats as unrecoverable. ``config/kombu_patch.py``
explains the bug and its patch, installed by every worker (``config/celery_app.py``). Here:

- the patch, one contract at a time: it was written for the installed kombu; kombu without it
  still crashes on the sequence Celery runs after a lost connection (so that this fails, and the
  patch can go, once a kombu release fixes it); with it, that sequence ends in a connection error
  kombu ignores;
- end to end: the worker and beat commands of docker-compose.yml (prefork, ``--concurrency 2``,
  production settings), read from the file and run outside Docker on the test database and a
  redis-server of the test's own, while a submitter process keeps submitting requests as the web
  does. Redis is killed (SIGKILL, restarted empty on the same port) while a round holds its message
  unacknowledged, KILLS times: the worker is the same process after every kill, and every accepted
  request is matched within MATCH_BOUND_SECONDS of Redis coming back. Without the patch
  (``KOMBU_DETACHED_CHANNEL_PATCH=0``) the first such kill kills the worker.

Figures are printed (``-s``).
"""

from __future__ import annotations

import importlib
import logging
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import kombu
import psycopg
import pytest
import redis
from kombu.transport.redis import Channel
from psycopg import sql

from config import kombu_patch
from marketplace.bounds import GPU_COUNT
from marketplace.models import BuyerRequest, Listing, Match, MatchingRun, Organisation
from tests.conftest import scale
from tests.workers import (
    ROOT,
    PrivateRedis,
    compose_process_env,
    compose_start,
    database_url_of_test_db,
    process_stop,
    sessions_blocked_by,
    wait_for,
)

#: Redis kills of the end-to-end test.
KILLS = scale(3, 8)
#: Seconds Redis stays down at each kill.
DOWN_SECONDS = 3
#: Beat's sweep interval in the end-to-end test: how soon the rounds lost with Redis are run again.
SWEEP_SECONDS = 2
#: After Redis is back, every request accepted so far is matched within this: the worker reconnects
#: (Celery retries 2, 4, 6… s after the loss), beat's next sweep, one round.
MATCH_BOUND_SECONDS = SWEEP_SECONDS + 25
#: Seconds the submitter pauses between two requests.
PACE_SECONDS = 0.1
SECRET_KEY = "a-test-secret-key-for-the-worker-outage-test-0123456789abcdef"
THE_CRASH = "'NoneType' object has no attribute 'hostname'"


# --- the patch, one contract at a time ----------------------------------------------------------


def test_the_kombu_patch_was_written_for_the_installed_kombu():
    assert kombu_patch.applies_to(kombu.__version__), (
        f"kombu is now {kombu.__version__}; config/kombu_patch.py was written for "
        f"{' or '.join(v + 'x' for v in kombu_patch.KOMBU_VERSIONS)}. Read kombu/transport/redis.py "
        "(Channel._connparams, Channel.close, QoS.restore_unacked) again: if a closed or detached channel "
        "still fails with AttributeError, add the version to KOMBU_VERSIONS; if it raises a connection "
        "error now, remove the patch (and test_kombu_still_crashes_when_a_lost_connection_is_closed fails)."
    )


@pytest.fixture
def unpatched(monkeypatch):
    """kombu's own ``Channel._connparams``, whatever this process installed; restored after."""
    original = getattr(Channel._connparams, "__wrapped__", Channel._connparams)
    monkeypatch.setattr(Channel, "_connparams", original)
    return original


def close_a_lost_connection_as_celery_does(redis_server: PrivateRedis) -> None:
    """What a worker's consumer does when Redis goes away (``Consumer.on_connection_error_after_
    connected``), on a connection in the state a worker's is: its default channel waiting on a BRPOP,
    another channel holding a message unacknowledged. Redis is killed; then ``collect()`` (closing
    the default channel fails on its BRPOP, closing the other fails restoring its message, and the
    transport is detached) and ``close()`` (the default channel again, now detached)."""
    connection = kombu.Connection(redis_server.url(0))
    consumed = kombu.Queue("patch-consumed", kombu.Exchange("patch-consumed"), "patch-consumed")
    held = kombu.Queue("patch-held", kombu.Exchange("patch-held"), "patch-held")
    producer = kombu.Producer(connection.default_channel)
    for queue in (consumed, held):
        producer.publish({"n": 1}, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue])
    received: list = []
    kombu.Consumer(connection, queues=[consumed], callbacks=[lambda body, message: received.append(message)]).consume()
    connection.drain_events(timeout=5)
    with pytest.raises(TimeoutError):
        connection.drain_events(timeout=0.2)  # a BRPOP is now pending on the default channel
    other = connection.channel()
    assert other.basic_get(held.name, no_ack=False) is not None
    assert received, "the default channel holds no message"
    redis_server.kill()
    connection.collect()
    connection.close()


def test_kombu_still_crashes_when_a_lost_connection_is_closed(private_redis, unpatched):
    # When this fails, a kombu release fixed the bug: remove config/kombu_patch.py, its celeryd_init
    # handler and KOMBU_DETACHED_CHANNEL_PATCH (see the module's docstring).
    with pytest.raises(AttributeError, match=re.escape(THE_CRASH)):
        close_a_lost_connection_as_celery_does(private_redis)


def test_with_the_patch_closing_a_lost_connection_ends_in_an_ignored_connection_error(
    private_redis, unpatched, monkeypatch
):
    guarded, raised = kombu_patch.guarded(unpatched), []

    def connparams(self, *args, **kwargs):
        try:
            return guarded(self, *args, **kwargs)
        except Exception as exc:
            raised.append(exc)
            raise

    monkeypatch.setattr(Channel, "_connparams", connparams)
    close_a_lost_connection_as_celery_does(private_redis)  # kombu's close() ignores connection errors

    assert any(isinstance(exc, redis.ConnectionError) and "detached" in str(exc) for exc in raised), raised


def test_install_patches_once_and_only_the_kombu_it_was_written_for(unpatched, monkeypatch, caplog):
    monkeypatch.setattr(kombu, "__version__", "5.8.0")
    with caplog.at_level(logging.WARNING, logger="config.kombu_patch"):
        assert not kombu_patch.install()
    assert not kombu_patch.installed()
    assert "not installed" in caplog.text
    monkeypatch.setattr(kombu, "__version__", "5.7.0")
    assert kombu_patch.install()
    assert Channel._connparams.__wrapped__ is unpatched
    assert kombu_patch.install()
    assert Channel._connparams.__wrapped__ is unpatched  # not wrapped twice


@pytest.mark.parametrize("enabled", [True, False])
def test_a_worker_installs_the_patch_unless_told_not_to(unpatched, settings, enabled):
    settings.KOMBU_DETACHED_CHANNEL_PATCH = enabled
    importlib.import_module("config.celery_app")._kombu_patched()  # config.celery_app the name is the app
    assert kombu_patch.installed() is enabled


def test_workers_and_beat_retry_the_broker_for_as_long_as_it_takes():
    # Celery's default gives up after 100 attempts (about 45 minutes) and exits; a worker started
    # while Redis is down retries too (test_a_worker_started_while_redis_is_down_waits_for_it).
    from config.celery_app import app

    assert app.conf.broker_connection_retry
    assert app.conf.broker_connection_retry_on_startup
    assert app.conf.broker_connection_max_retries is None


# --- end to end: compose's worker and beat through Redis kills ----------------------------------


class Stack:
    """The worker and beat of docker-compose.yml, and a submitter in the web's place, on the test
    database and ``redis_server`` (broker db 0, cache db 1, as compose has them); logs in
    ``log_dir``."""

    def __init__(self, redis_server: PrivateRedis, log_dir: Path, **env: str):
        self.redis_server, self.log_dir, self.processes = redis_server, log_dir, {}
        self.env = {
            "DATABASE_URL": database_url_of_test_db(),
            "CELERY_BROKER_URL": redis_server.url(0),
            "CACHE_URL": redis_server.url(1),
            "DJANGO_SECRET_KEY": SECRET_KEY,
            "MARKETPLACE_VAR_DIR": str(log_dir),  # /app/var in the image: beat's schedule
            "MATCHING_SWEEP_SECONDS": str(SWEEP_SECONDS),
            **env,
        }

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, name: str) -> subprocess.Popen:
        self.processes[name] = compose_start(name, env=self.env, log_path=self.log_dir / f"{name}.log")
        return self.processes[name]

    def start_all(self, buyer_id: int) -> None:
        self.start("worker")
        assert wait_for(lambda: " ready." in self.log("worker"), 60), self.logs()
        self.start("beat")
        with (self.log_dir / "submitter.log").open("a") as log:
            self.processes["submitter"] = subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.submitter", str(buyer_id), str(PACE_SECONDS)],
                cwd=ROOT,
                env=compose_process_env("web", self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def worker(self) -> subprocess.Popen:
        return self.processes["worker"]

    def unacked(self) -> int:
        """Messages the worker has taken and not acknowledged (kombu's ``unacked`` hash)."""
        try:
            return redis.Redis.from_url(self.redis_server.url(0), socket_timeout=1).hlen("unacked")
        except redis.RedisError:
            return 0

    def stop(self) -> None:
        for process in reversed(self.processes.values()):
            process_stop(process)

    def logs(self, chars: int = 4000) -> str:
        return "\n".join(f"--- {name}.log\n{self.log(name)[-chars:]}" for name in self.processes)


@pytest.fixture
def market(postgres, reference, make_listing):
    """One listing with room for every request the submitter sends, and its buyer."""
    listing = make_listing(gpu_count=GPU_COUNT.maximum)
    buyer = Organisation.objects.create(name="Outage buyer", kind=Organisation.Kind.BUYER)
    return listing, buyer


def stack_of(request, private_redis, tmp_path, **env) -> Stack:
    stack = Stack(private_redis, tmp_path, **env)
    request.addfinalizer(stack.stop)  # before the private Redis stops (its fixture was set up first)
    return stack


@dataclass
class Kill:
    unacked: int  # messages the worker held when Redis was killed
    accepted_while_down: int
    recovery_seconds: float | None = None  # from Redis back to every request accepted so far matched


def accepted(buyer: Organisation) -> list[int]:
    return list(BuyerRequest.objects.filter(buyer=buyer).values_list("pk", flat=True))


def all_matched(ids: list[int]) -> bool:
    return not BuyerRequest.objects.filter(pk__in=ids).exclude(status=BuyerRequest.Status.MATCHED).exists()


def kill_while_a_round_holds_its_message(
    stack: Stack, private_redis: PrivateRedis, listing: Listing, buyer: Organisation
) -> Kill:
    """Hold the listing's row lock until a round waits on it (so the worker holds that round's
    message unacknowledged), SIGKILL Redis, let the round go on, and restart Redis empty on the same
    port DOWN_SECONDS later."""
    with psycopg.connect(database_url_of_test_db()) as holder:
        table = sql.Identifier(Listing._meta.db_table)
        holder.execute(sql.SQL("SELECT id FROM {} WHERE id = %s FOR UPDATE").format(table), [listing.pk])
        held = wait_for(lambda: sessions_blocked_by(holder.info.backend_pid) > 0 and stack.unacked() > 0, 30)
        assert held, f"no round waited on the listing holding its message\n{stack.logs()}"
        unacked = stack.unacked()
        before = len(accepted(buyer))
        private_redis.kill()
        holder.rollback()
    time.sleep(DOWN_SECONDS)
    during = len(accepted(buyer)) - before
    private_redis.start()
    return Kill(unacked=unacked, accepted_while_down=during)


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_the_worker_survives_redis_kills_and_every_accepted_request_is_matched(
    request, market, private_redis, tmp_path
):
    listing, buyer = market
    stack = stack_of(request, private_redis, tmp_path)
    stack.start_all(buyer.pk)
    worker_pid = stack.worker.pid
    kills: list[Kill] = []
    for number in range(1, KILLS + 1):
        assert wait_for(lambda: len(accepted(buyer)) > 0, 30), stack.logs()
        kill = kill_while_a_round_holds_its_message(stack, private_redis, listing, buyer)
        up_at = time.monotonic()
        kills.append(kill)
        ids = accepted(buyer)
        matched = wait_for(lambda ids=ids: all_matched(ids), MATCH_BOUND_SECONDS, interval=0.2)
        kill.recovery_seconds = time.monotonic() - up_at
        assert stack.worker.poll() is None, f"kill {number}: the worker exited\n{stack.logs()}"
        assert matched, f"kill {number}: unmatched {MATCH_BOUND_SECONDS} s after Redis came back\n{stack.logs()}"

    # Beat and the submitter (publishing like the web) live through the kills without the patch.
    assert stack.processes["beat"].poll() is None, stack.logs()
    assert stack.processes["submitter"].poll() is None, stack.logs()
    process_stop(stack.processes["submitter"])
    ids = accepted(buyer)
    started = time.monotonic()
    assert wait_for(lambda: all_matched(ids), MATCH_BOUND_SECONDS, interval=0.2), stack.logs()
    last_match_seconds = time.monotonic() - started
    worker_log = stack.log("worker")
    lost_acks = worker_log.count("Couldn't ack")
    print(
        f"\n{len(ids)} requests accepted through {KILLS} Redis kills of {DOWN_SECONDS} s"
        f" ({sum(k.accepted_while_down for k in kills)} of them while Redis was down); the worker held"
        f" {', '.join(str(k.unacked) for k in kills)} message(s) unacknowledged at each kill and survived"
        f" every one (pid {worker_pid}; {lost_acks} late acknowledgements lost);"
        f"\nevery request accepted so far matched {', '.join(f'{k.recovery_seconds:.1f}' for k in kills)} s"
        f" after Redis came back (bound {MATCH_BOUND_SECONDS} s); the last ones {last_match_seconds:.1f} s"
        f" after the submitter stopped; rounds: {dict(Counter(MatchingRun.objects.values_list('status', flat=True)))}"
    )

    # The same worker process throughout, and it noticed every kill.
    assert stack.worker.poll() is None
    assert stack.worker.pid == worker_pid
    assert "Unrecoverable error" not in worker_log
    assert worker_log.count("Connection to broker lost") >= KILLS, worker_log[-4000:]
    # Every kill met a worker holding a message, and requests kept being accepted while Redis was down.
    assert all(k.unacked > 0 for k in kills)
    assert all(k.accepted_while_down > 0 for k in kills), kills
    assert not re.search(r"^refused ", stack.log("submitter"), re.MULTILINE), stack.log("submitter")[-4000:]
    # Every round ran to its end, those holding their message at a kill too: none was cancelled
    # (CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS is off) or failed. The stack is
    # still live (beat's sweep may start a round just now): a round still running is waited for,
    # not counted against it (a CI run once counted one that began after the last match).
    still = MatchingRun.objects.filter(status=MatchingRun.Status.RUNNING)
    ended = wait_for(lambda: not still.exists(), MATCH_BOUND_SECONDS, interval=0.2)
    runs = Counter(MatchingRun.objects.values_list("status", flat=True))
    assert ended, runs
    assert set(runs) == {MatchingRun.Status.SUCCEEDED}, runs
    # Every accepted request matched exactly once, none of the GPUs twice.
    assert BuyerRequest.objects.filter(pk__in=ids, status=BuyerRequest.Status.MATCHED).count() == len(ids)
    assert Match.objects.filter(request_id__in=ids).count() == len(ids)
    listing.refresh_from_db()
    assert listing.allocated_gpus == len(ids)


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_without_the_patch_a_redis_kill_while_a_round_holds_its_message_kills_the_worker(
    request, market, private_redis, tmp_path
):
    listing, buyer = market
    stack = stack_of(request, private_redis, tmp_path, KOMBU_DETACHED_CHANNEL_PATCH="0")
    stack.start_all(buyer.pk)
    assert wait_for(lambda: len(accepted(buyer)) > 0, 30), stack.logs()

    kill_while_a_round_holds_its_message(stack, private_redis, listing, buyer)

    assert wait_for(lambda: stack.worker.poll() is not None, 20), f"the worker survived\n{stack.logs()}"
    assert stack.worker.returncode != 0
    assert "Unrecoverable error" in stack.log("worker")
    assert THE_CRASH in stack.log("worker")


@pytest.mark.services
def test_a_worker_started_while_redis_is_down_waits_for_it(request, private_redis, tmp_path):
    private_redis.kill()
    stack = stack_of(request, private_redis, tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/unused.sqlite3")
    worker = stack.start("worker")
    assert wait_for(lambda: "Cannot connect to redis" in stack.log("worker"), 30), stack.logs()
    time.sleep(3)  # a second attempt fails too
    assert worker.poll() is None, stack.logs()

    private_redis.start()

    assert wait_for(lambda: " ready." in stack.log("worker"), 30), stack.logs()
    assert worker.poll() is None
