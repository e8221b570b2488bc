"""Celery adapter: the only Django-aware module of the engine.

A round over one shard (a GPU model): take the shard's lock, snapshot open requests and free
capacity, solve, apply the plan in one transaction under row locks, record the run. Tasks take
only JSON arguments and are idempotent: a repeated round finds less open work and does less.
"""

from __future__ import annotations

import logging
import time

from celery import shared_task
from django.core.cache import cache

from marketplace import selectors
from marketplace.clock import market_now
from marketplace.services import matching as matching_services
from marketplace.services.lifecycle import lifecycle_tick
from marketplace.services.triggers import round_pending_key
from matching.policies import ENGINE, planner

logger = logging.getLogger(__name__)
#: A round holds its shard's lock at most this long (its hard time limit frees it earlier).
SHARD_LOCK_SECONDS = 300


class ShardBusy(Exception):
    """Another round holds this shard; retried so that the triggering commit is not missed."""


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def round_run(*, shard: str, trigger: str, policy: str = ENGINE) -> int | None:
    """Run one round over ``shard`` now; returns the MatchingRun id, or None if the shard is busy.

    Also what ``manage.py match`` calls synchronously. ``policy`` (``matching.policies``) picks the
    plan builder: the engine, or a baseline that ``manage.py simulate`` replays demand under.
    """
    planner(policy)  # an unknown policy fails here, before any lock or run row
    lock = f"matching:shard-lock:{shard}"
    if not cache.add(lock, 1, timeout=SHARD_LOCK_SECONDS):
        return None
    try:
        cache.delete(round_pending_key(shard))  # commits from now on ask for a fresh round
        return _round_locked(shard=shard, trigger=trigger, policy=policy)
    finally:
        cache.delete(lock)


def _round_locked(*, shard: str, trigger: str, policy: str = ENGINE) -> int:
    now = market_now()
    run = matching_services.matching_run_start(trigger=trigger, shard=shard, now=now)
    try:
        started = time.perf_counter()
        problem = selectors.engine_problem(gpu_model_code=shard, now=now)
        timings = {"snapshot": _ms_since(started)}
        started = time.perf_counter()
        plan = planner(policy)(problem)
        timings["solve"] = _ms_since(started)
        started = time.perf_counter()
        result = matching_services.match_plan_apply(plan=plan, run_id=run.pk, now=now)
        timings["apply"] = _ms_since(started)
        matching_services.matching_run_finish(
            run_id=run.pk,
            plan=plan,
            result=result,
            request_count=len(problem.requests),
            listing_count=len(problem.listings),
            timings_ms=timings,
            finished_at=market_now(),
        )
    except BaseException as exc:  # record even a soft time limit or a kill signal, then re-raise
        matching_services.matching_run_fail(run_id=run.pk, error=repr(exc), finished_at=market_now())
        raise
    logger.info("round %s on %s: served %s replicas", run.pk, shard, result.served_replicas)
    return run.pk


@shared_task(
    bind=True,
    autoretry_for=(ShardBusy,),
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=8,
    acks_late=True,
    reject_on_worker_lost=True,
)
def matching_round(self, *, shard: str, trigger: str = "commit") -> int | None:
    """One round over ``shard`` (a GPU model code); retried with backoff while the shard is busy."""
    run_id = round_run(shard=shard, trigger=trigger)
    if run_id is None:
        raise ShardBusy(shard)
    return run_id


@shared_task(acks_late=True)
def matching_sweep() -> list[str]:
    """Beat's sweep: move the lifecycle on (start, complete and settle matches; expire requests;
    close listings), then enqueue a round for every shard with open work.

    Makes up for any trigger a broker outage lost: the database, not the queue, holds the work.
    """
    now = market_now()
    lifecycle_tick(now=now)
    shards = selectors.shards_with_open_work(now=now)
    for shard in shards:
        matching_round.apply_async(kwargs={"shard": shard, "trigger": "sweep"})
    return shards
