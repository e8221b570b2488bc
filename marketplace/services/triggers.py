"""Asking the engine for a matching round after a write commits.

The database is the source of truth and Celery only triggers: a trigger lost to a broker outage
delays matching until the next beat sweep, it never loses work.
"""

from __future__ import annotations

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
    """
    from matching.tasks import matching_round  # tasks import services: resolve at call time

    delay = settings.MATCHING_COALESCE_SECONDS
    if not cache.add(round_pending_key(shard), 1, timeout=max(60, delay * 10)):
        return
    try:
        matching_round.apply_async(kwargs={"shard": shard, "trigger": "commit"}, countdown=delay)
    except Exception as exc:  # the broker is down: the beat sweep will run this shard
        cache.delete(round_pending_key(shard))
        logger.warning("could not enqueue a matching round for %s (%s); the sweep will run it", shard, exc)
