"""A patch for kombu 5.7.x's Redis transport: a channel cut off from its connection fails with a
connection error, which Celery recovers from, instead of an ``AttributeError``, which kills the worker.

For kombu 5.7.x only (5.7.0 is the newest release as this is written, and the code below was read
in it): :func:`install` refuses any other version, and ``tests/reliability/test_worker_outage.py``
fails on one, so that an upgrade makes someone read ``kombu/transport/redis.py`` again. Remove this
module, its ``celeryd_init`` handler in ``config/celery_app.py`` and the
``KOMBU_DETACHED_CHANNEL_PATCH`` setting once a kombu release raises a connection error there
itself: ``test_kombu_still_crashes_when_a_lost_connection_is_closed`` then fails.

The bug. When a worker's Redis goes away while it holds unacknowledged messages (every running
round: tasks acknowledge late), Celery's consumer
(``celery.worker.consumer.Consumer.on_connection_error_after_connected``) does two things:

1. ``connection.collect()``: closing the default channel starts with reading the pending BRPOP
   reply, which raises ``redis.ConnectionError``; ``collect`` ignores it, so the channel stays
   open, and then detaches the transport from its kombu ``Connection`` (``transport.client =
   None``);
2. ``connection.close()``: the same channel is closed again; closing restores its unacknowledged
   messages (``QoS.restore_unacked``), which needs a Redis client, whose connection pool
   ``Channel._connparams`` builds from ``self.connection.client.hostname``: ``None.hostname``.

``kombu.common.ignore_errors`` and the consumer's retry loop only ignore connection and channel
errors, so the ``AttributeError`` is an "Unrecoverable error" and the worker exits (status 1). A
round that finishes on that channel and acknowledges its message meets the same ``None``. Reproduced
with the production command line (``celery -A config worker --loglevel INFO --concurrency 2``,
prefork) on PostgreSQL and a redis-server killed with SIGKILL: each of 13 kills while a round held
its message killed the worker (exit status 1); none of 18 kills with no message in flight did.

The patch. ``_connparams`` of a channel whose transport is detached (``connection.client is
None``), or that was closed (``connection is None``), raises ``redis.exceptions.ConnectionError``,
one of the transport's ``connection_errors``. ``ignore_errors`` then swallows it, the consumer
reconnects with a new channel as it does for any other connection loss, and a late
acknowledgement is logged ("Couldn't ack") instead of raised. The messages that channel held are
not restored: a Redis restarted empty has lost them anyway, and a Redis that kept them (an
append-only file) delivers them again after the visibility timeout. Either is harmless here: a
round is idempotent, and beat's sweep runs every shard with open work.
"""

from __future__ import annotations

import functools
import logging

import kombu
from kombu.transport.redis import Channel
from redis.exceptions import ConnectionError as RedisConnectionError

logger = logging.getLogger(__name__)

#: The kombu versions (prefixes of ``kombu.__version__``) this patch was checked against.
KOMBU_VERSIONS = ("5.7.",)


def applies_to(version: str) -> bool:
    """Whether the patch was written for kombu ``version``."""
    return version.startswith(KOMBU_VERSIONS)


def guarded(connparams):
    """``Channel._connparams`` that raises a connection error on a detached or closed channel."""

    @functools.wraps(connparams)
    def _connparams(self, *args, **kwargs):
        if self.connection is None or self.connection.client is None:
            raise RedisConnectionError(
                "kombu's Redis channel was detached from its broker connection after the connection "
                "was lost (config/kombu_patch.py)"
            )
        return connparams(self, *args, **kwargs)

    _connparams.marketplace_patched = True  # type: ignore[attr-defined]
    return _connparams


def installed() -> bool:
    return getattr(Channel._connparams, "marketplace_patched", False)


def install() -> bool:
    """Patch kombu's Redis channel (once); True if it is patched. On a kombu this patch was not
    written for, nothing is patched and a warning says so."""
    if installed():
        return True
    if not applies_to(kombu.__version__):
        logger.warning(
            "config/kombu_patch.py is for kombu %s, not %s: not installed. Check whether "
            "kombu/transport/redis.py Channel._connparams still fails on a detached channel.",
            " or ".join(f"{v}x" for v in KOMBU_VERSIONS),
            kombu.__version__,
        )
        return False
    Channel._connparams = guarded(Channel._connparams)  # type: ignore[method-assign]
    return True
