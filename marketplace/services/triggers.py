"""Asking for a matching round after a write commits.

The database is the source of truth and Celery only triggers: a trigger lost to a broker outage
delays matching until the next beat sweep, it never loses work.

Coalescing: a shard is *pending* from the first commit that asks for a round until a round takes
the shard's lock and clears the mark (``services.rounds``). A commit that finds the shard already
pending enqueues nothing: the pending round has not snapshotted yet and will see its rows. A commit
that marks the shard pending starts a round at once, unless a round holds the lock: then the
holder starts the next one (a *follow-up*) when it releases the lock. So on a quiet shard a
request waits for at most the round already running, and the commits that arrive during one round
share the next.

A *busy* shard coalesces as it always did: its next round waits ``MATCHING_COALESCE_SECONDS``, so
that each round takes a window's worth of commits instead of one or two. A shard is busy when, in
the last second, at least ``MATCHING_BUSY_COMMITS_PER_SECOND`` commits found a round of it already
pending or running: commits are arriving faster than rounds finish. A buyer who submits, waits for
the match and submits again never finds the shard contended, however fast the rounds, so a quiet
shard never makes anyone wait for a window that nobody else is filling.

Marks and locks are per GPU model. A round covering a component of GPU models that inference
demand couples ("h100+h20", ``services.rounds``) holds each one's lock and clears each one's mark,
so a commit naming any of them (an inference request names its first choice's) waits for that
round's follow-up, or starts the round of its GPU model, which covers the component.

Tasks are enqueued by name (:data:`MATCHING_ROUND_TASK`): nothing here imports the task module,
which imports the services.
"""

from __future__ import annotations

import contextlib
import logging
import time
from functools import partial

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from marketplace.services.shard_lock import shard_locked

logger = logging.getLogger(__name__)

#: The Celery task that runs one round (``marketplace.tasks.matching_round``).
MATCHING_ROUND_TASK = "marketplace.matching_round"
#: How long a shard stays marked pending if no round ever clears the mark (its task was lost):
#: longer than the sweep interval, so the sweep's round clears it first.
PENDING_SECONDS = 120


def round_pending_key(shard: str) -> str:
    return f"matching:round-pending:{shard}"


#: The wall clock the commit counts are bucketed by (a seam for tests).
_clock = time.time


def _contended_key(shard: str, second: int) -> str:
    return f"matching:contended-commits:{shard}:{second}"


def matching_round_enqueue_on_commit(*, gpu_model_code: str) -> None:
    """After the current transaction commits, ask for a round over ``gpu_model_code``'s shard."""
    transaction.on_commit(partial(_round_request, gpu_model_code))


def matching_round_enqueue(*, shard: str, trigger: str, countdown: float = 0) -> None:
    """Enqueue one round over ``shard``, to start in ``countdown`` seconds. Never raises: a lost
    message is left to the sweep."""
    kwargs = {"shard": shard, "trigger": trigger}
    try:
        current_app.signature(MATCHING_ROUND_TASK, kwargs=kwargs).apply_async(countdown=countdown or None)
    except Exception as exc:
        _trigger_lost(shard, "broker", exc)
        # So that the next commit tries again; if the cache is gone too, the mark expires by itself.
        with contextlib.suppress(Exception):
            cache.delete(round_pending_key(shard))


def round_pending(shard: str) -> bool:
    """Whether a commit asked for a round over ``shard`` that no round has started yet. False when
    the cache cannot say (the sweep runs the round then)."""
    try:
        return cache.get(round_pending_key(shard)) is not None
    except Exception as exc:
        _trigger_lost(shard, "cache", exc)
        return False


def round_delay(shard: str) -> float:
    """Seconds the next round of ``shard`` should wait: 0 on a quiet shard, the coalescing window on
    a busy one (see the module docstring). 0 when the cache cannot say."""
    window = settings.MATCHING_COALESCE_SECONDS
    if not window:
        return 0
    try:
        return window if _contended_last_second(shard) >= settings.MATCHING_BUSY_COMMITS_PER_SECOND else 0
    except Exception:  # without the cache there is nothing to coalesce on: start at once
        return 0


def _contended_last_second(shard: str) -> float:
    """Commits that found a round of ``shard`` pending or running in the last second: this second's
    count plus the previous second's, weighted by how much of it is still within the last second."""
    now = _clock()
    second = int(now)
    current_key, previous_key = _contended_key(shard, second), _contended_key(shard, second - 1)
    counts = cache.get_many([current_key, previous_key])
    return counts.get(current_key, 0) + counts.get(previous_key, 0) * (1 - (now - second))


def _contended_count(shard: str) -> None:
    """Count one commit that found a round of ``shard`` pending or running, in this second's bucket."""
    key = _contended_key(shard, int(_clock()))
    cache.add(key, 0, timeout=3)
    cache.incr(key)


def round_pending_clear(shard: str) -> None:
    """A round starting over ``shard`` takes every commit made so far: later commits ask anew.
    Raises when the cache is unreachable: the round then fails and is retried."""
    cache.delete(round_pending_key(shard))


def _round_request(shard: str) -> None:
    """Mark ``shard`` pending and, if this commit is the one that marked it and no round holds the
    lock, enqueue a round.

    ``cache.add`` is atomic, so of many writers committing at once exactly one marks the shard.
    Never raises: this runs after the write committed, and an error here would answer a client
    whose object exists with a 5xx (a retry would then create it twice). With the cache or the
    broker down (each call bounded by ``REDIS_TIMEOUT_SECONDS``) the trigger is dropped, and the
    beat sweep, which reads open work from the database, runs the round once Redis is back.
    """
    try:
        if not cache.add(round_pending_key(shard), 1, timeout=PENDING_SECONDS):
            _contended_count(shard)
            return
    except Exception as exc:  # without the cache a round fails too (it clears the mark): leave it to the sweep
        _trigger_lost(shard, "cache", exc)
        return
    try:
        running = shard_locked(shard)
    except Exception as exc:  # cannot tell: enqueue; a round that finds the shard busy retries
        logger.warning("could not tell whether a round of %s is running (%s)", shard, exc)
        running = False
    if running:
        with contextlib.suppress(Exception):
            _contended_count(shard)
        return
    matching_round_enqueue(shard=shard, trigger="commit", countdown=round_delay(shard))


def _trigger_lost(shard: str, server: str, exc: Exception) -> None:
    logger.warning("no matching round enqueued for %s, %s unavailable (%s): the sweep will run it", shard, server, exc)
