"""The worker survives Redis going away.

kombu 5.7's Redis transport killed the Celery worker when Redis went away while the worker held
unacknowledged messages (every running round: tasks acknowledge late): an ``AttributeError`` on a
channel detached from its connection, which Celery treats as unrecoverable. ``config/kombu_patch.py``
explains the bug and its patch, installed by every worker (``config/celery_app.py``). Here, the
patch one contract at a time: it was written for the installed kombu; kombu without it still
crashes on the sequence Celery runs after a lost connection (so that this fails, and the patch can
go, once a kombu release fixes it); with it, that sequence ends in a connection error kombu ignores.
"""

from __future__ import annotations

import importlib
import logging
import re

import kombu
import pytest
import redis
from kombu.transport.redis import Channel

from config import kombu_patch
from tests.workers import PrivateRedis

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
