"""Asking the engine for a matching round after a write commits.

The database is the source of truth and Celery only triggers: a trigger lost to a broker outage
delays matching until the next beat sweep, it never loses work.
"""

from __future__ import annotations

import contextlib
import logging
from functools import partial

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)


def round_pending_key(shard: str) -> str:
    return f"matching:round-pending:{shard}"


def matching_round_enqueue_on_commit(*, gpu_model_code: str) -> None:
    """After the current transaction commits, ask for a round over ``gpu_model_code``'s shard."""
    transaction.on_commit(partial(_enqueue_round, gpu_model_code))


def _enqueue_round(shard: str) -> None:
    """Enqueue one round per shard per coalescing window: a burst of commits gets one round.

    ``cache.add`` is atomic, so of many writers committing at once exactly one enqueues; the round
    clears the key when it starts, so commits after that start ask for a fresh round.

    Never raises: this runs after the write committed, and an error here would answer a client
    whose object exists with a 5xx (a retry would then create it twice). With the cache or the
    broker down (each call bounded by ``REDIS_TIMEOUT_SECONDS``) the trigger is dropped, and the
    beat sweep, which reads open work from the database, runs the round once Redis is back.
    """
    from matching.tasks import matching_round  # tasks import services: resolve at call time

    delay = settings.MATCHING_COALESCE_SECONDS
    key = round_pending_key(shard)
    try:
        if not cache.add(key, 1, timeout=max(60, delay * 10)):
            return
    except Exception as exc:  # without the cache a round fails too (it clears this key): leave it to the sweep
        _trigger_lost(shard, "cache", exc)
        return
    try:
        matching_round.apply_async(kwargs={"shard": shard, "trigger": "commit"}, countdown=delay)
    except Exception as exc:
        _trigger_lost(shard, "broker", exc)
        # So that the next commit tries again; if the cache is gone too, the key expires by itself.
        with contextlib.suppress(Exception):
            cache.delete(key)


def _trigger_lost(shard: str, server: str, exc: Exception) -> None:
    logger.warning("no matching round enqueued for %s, %s unavailable (%s): the sweep will run it", shard, server, exc)
