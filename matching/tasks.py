"""Celery adapter: the only Django-aware module of the engine.

A round over one shard (a GPU model): take the shard's lock, snapshot open requests and free
capacity, solve, apply the plan in one transaction under row locks, record the run. Tasks take
only JSON arguments and are idempotent: a repeated round finds less open work and does less.

Faults: the shard lock dies with a killed worker (``marketplace.locks``) and the next round marks
the dead worker's run failed; a round past its soft time limit cancels its query, rolls back, and
is retried.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from psycopg.pq import TransactionStatus

from marketplace import selectors
from marketplace.clock import market_now
from marketplace.locks import shard_lock
from marketplace.services import matching as matching_services
from marketplace.services.lifecycle import lifecycle_tick
from marketplace.services.triggers import round_pending_key
from matching.policies import ENGINE, planner

logger = logging.getLogger(__name__)


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
    with shard_lock(shard) as held:
        if not held:
            return None
        with connection.execute_wrapper(_cancel_query_on_time_limit):
            cache.delete(round_pending_key(shard))  # commits from now on ask for a fresh round
            matching_services.matching_runs_lost_fail(shard=shard, finished_at=market_now())
            return _round_locked(shard=shard, trigger=trigger, policy=policy)


def _cancel_query_on_time_limit(execute, sql, params, many, context):
    """Django execute wrapper: a soft time limit that interrupts a query (say, one waiting on a
    row lock) leaves the connection mid-query, unusable even for a rollback, and the server still
    waiting with the round's row locks. Cancel the query on the server and drop the connection, so
    that the server rolls the transaction back and frees every lock the round held, its shard lock
    too, at once; Django reconnects for the next query."""
    try:
        return execute(sql, params, many, context)
    except SoftTimeLimitExceeded:
        db = context["connection"]
        if db.vendor == "postgresql" and _mid_query(db.connection):
            try:
                db.connection.cancel_safe(timeout=5)
            except Exception:  # the close below ends the query anyway, if not at once
                logger.exception("could not cancel the query of a round past its soft time limit")
            db.close()
        raise


def _mid_query(session) -> bool:
    """Whether the psycopg ``session`` (None when closed) still waits for a query's result."""
    return session is not None and session.info.transaction_status == TransactionStatus.ACTIVE


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
    autoretry_for=(ShardBusy, SoftTimeLimitExceeded),
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=8,
    acks_late=True,
    reject_on_worker_lost=True,
)
def matching_round(self, *, shard: str, trigger: str = "commit") -> int | None:
    """One round over ``shard`` (a GPU model code); retried with backoff while the shard is busy
    and after a round aborted at its soft time limit (its run recorded failed, nothing applied).
    After the last retry the beat sweep still runs the shard: the database holds the work."""
    run_id = round_run(shard=shard, trigger=trigger)
    if run_id is None:
        raise ShardBusy(shard)
    return run_id


@shared_task(acks_late=True)
def matching_sweep() -> list[str]:
    """Beat's sweep: move the lifecycle on (start, complete and settle matches; expire requests;
    close listings), then enqueue a round for every shard with open work, or with a run its dead
    worker left marked running (the round marks it lost).

    Makes up for any trigger a broker outage lost: the database, not the queue, holds the work.
    """
    now = market_now()
    lifecycle_tick(now=now)
    lost_before = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    shards = sorted(
        {*selectors.shards_with_open_work(now=now), *selectors.shards_with_lost_runs(started_before=lost_before)}
    )
    for shard in shards:
        matching_round.apply_async(kwargs={"shard": shard, "trigger": "sweep"})
    return shards
