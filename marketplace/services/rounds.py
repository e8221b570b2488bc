"""A matching round, start to finish: the one place to read how demand becomes matches.

A *shard* is one GPU model's round, or, when open inference requests couple GPU models, the round
of the connected component of GPU models they couple ("h100+h20": ``selectors.shard_component``;
docs/architecture.md, "Component rounds"). :func:`round_run` over a shard:

1. takes the lock of each of its GPU models, without waiting (``services.shard_lock``), growing to
   the component under the locks (:func:`_component_locked`); a busy shard returns None and the
   caller retries (``marketplace.tasks.matching_round``);
2. clears its GPU models' pending flags, so that commits from now on ask for a fresh round
   (``marketplace.services.triggers``);
3. marks failed any run sharing a GPU model that a dead worker left running
   (:func:`matching_runs_lost_fail`);
4. records the run as started (committed at once, so a crashed round stays visible);
5. snapshots open requests and free capacity (``selectors.engine_problem``), no locks held,
   leaving out any row that breaks the market's rules or cannot be read;
6. solves (``matching.policies.planner``: the engine, or a baseline for ``manage.py simulate``),
   leaving out any row that makes the engine raise (``matching.quarantine``; an inference request
   too);
7. applies the plan in one transaction under row locks (``services.plans.match_plan_apply``),
   re-checking every assignment against the locked rows, and leaving out any request whose match
   the database refuses;
8. records the run's outcome with the rows it left out and why (also on each row, for its owner;
   and on each request the look-ahead held, when it re-enters), or its failure (then re-raises);
9. releases the lock, then starts the round that commits arriving meanwhile asked for.

So one bad row, whoever wrote it, costs only its owner the round; never the shard.

Faults: the shard lock dies with a killed worker and the next round marks the dead worker's run
failed; a round past its soft time limit cancels its query (:func:`_cancel_query_on_time_limit`),
rolls back, and is retried. The database, not the queue, holds the work: the beat sweep
(:func:`rounds_sweep`) re-runs every shard with open work.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import NotRequired, TypedDict

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Greatest
from psycopg.pq import TransactionStatus

from marketplace import selectors
from marketplace.market_time import market_now
from marketplace.models import BuyerRequest, Listing, MatchingRun
from marketplace.services.agents import agents_sweep
from marketplace.services.events import listings_idle_publish, requests_unserved_publish
from marketplace.services.lifecycle import lifecycle_tick
from marketplace.services.plans import ApplyResult, match_plan_apply_quarantined
from marketplace.services.prices import clearing_prices_record
from marketplace.services.shard_lock import ShardLocks, shard_locks
from marketplace.services.triggers import matching_round_enqueue, round_delay, round_pending, round_pending_clear
from matching.interruptible import on_demand_view
from matching.policies import ENGINE, planner
from matching.prices import with_prices
from matching.problem import Blocked, InferenceUnserved, Plan, Problem, blocked_other
from matching.quarantine import LeftOut, plan_quarantined
from matching.timings import ms_since

logger = logging.getLogger(__name__)

WORKER_LOST = "worker lost: the process running this round died before recording its outcome"


def round_run(*, shard: str, trigger: str, policy: str = ENGINE) -> int | None:
    """Run one round over ``shard`` now; returns the MatchingRun id, or None if the shard is busy.

    ``shard`` names one GPU model ("h20") or several ("h100+h20", ``selectors.shard_name``); the
    round covers their component (:func:`_component_locked`), and its run records that component as
    its shard. Also what ``manage.py match`` calls synchronously. ``policy`` (``matching.policies``)
    picks the plan builder: the engine, or a baseline that ``manage.py simulate`` replays demand under.
    """
    planner(policy)  # an unknown policy fails here, before any lock or run row
    held = ""  # the GPU models whose locks this round held (and so whose commits may wait for it)
    try:
        with shard_locks() as locks:
            component = _component_locked(shard, locks)
            # Even a round that gave up held some locks for a moment: a commit that saw one held
            # waits for its follow-up.
            held = selectors.shard_name(locks.held)
            if component is None:
                return None
            with connection.execute_wrapper(_cancel_query_on_time_limit):
                matching_runs_lost_fail(shard=component, finished_at=market_now())
                return _round_locked(shard=component, trigger=trigger, policy=policy)
    finally:
        if held:
            _follow_up(held)


def _component_locked(shard: str, locks: ShardLocks) -> str | None:
    """Take the locks of the component a round of ``shard`` covers; its name, or None when another
    round holds one of them (the caller then gives up; the locks it took are released).

    The component (``selectors.shard_component``: the GPU models open inference requests couple,
    transitively) is worked out while holding the locks of what is known of it so far, after
    clearing those GPU models' pending marks, and grows until it holds no GPU model more. So an
    inference request committed before the last look is in the component; one committed after
    it marked its GPU model pending again and gets the follow-up round (``_follow_up``), or, filed
    under a GPU model outside the component, a round of its own. A market without inference demand
    takes exactly the one lock it always took.
    """
    wanted = set(selectors.shard_members(shard))
    while True:
        new = sorted(wanted - locks.held)
        if not locks.add(new):
            return None
        for code in new:
            round_pending_clear(code)
        component = set(
            selectors.shard_members(selectors.shard_component(selectors.shard_name(locks.held), now=market_now()))
        )
        if component <= locks.held:
            return selectors.shard_name(locks.held)
        wanted = component


def _follow_up(shard: str) -> None:
    """Start the round that commits asked for while this one held the locks of ``shard``'s GPU models.

    Called after the locks are released. A commit that saw its GPU model's lock held left it marked
    pending and enqueued nothing (``triggers``); checking the marks only after releasing means that
    either this check sees it, or the commit saw the lock free and enqueued a round itself. One
    round covers every GPU model marked pending (it takes their component). The follow-up starts at
    once on a quiet shard, after the coalescing window on a busy one (``triggers.round_delay``).
    """
    pending = [code for code in selectors.shard_members(shard) if round_pending(code)]
    if pending:
        delay = max(round_delay(code) for code in pending)
        matching_round_enqueue(shard=selectors.shard_name(pending), trigger="commit", countdown=delay)


def _round_locked(*, shard: str, trigger: str, policy: str) -> int:
    """Steps 4–8 of a round; precondition: the caller holds the lock of each GPU model of ``shard``."""
    now = market_now()
    run = matching_run_start(trigger=trigger, shard=shard, now=now)
    try:
        started = time.perf_counter()
        snapshot = selectors.engine_problem(shard=shard, now=now)
        problem = snapshot.problem
        timings = {"snapshot": ms_since(started)}
        started = time.perf_counter()
        plan, unplannable = plan_quarantined(planner(policy), problem, passthrough=(SoftTimeLimitExceeded,))
        timings["solve"] = ms_since(started)
        if policy == ENGINE:
            started = time.perf_counter()
            # Clearing prices are on-demand prices: interruptible demand is served only after it,
            # and inference demand's placements are capacity taken (the re-solves know GPU form only).
            priced = with_prices(
                *on_demand_view(*gpu_form_view(without(problem, unplannable), plan)),
                max_resolves=settings.PRICE_MAX_RESOLVES,
                max_component_requests=settings.PRICE_MAX_COMPONENT_REQUESTS,
                budget_seconds=settings.PRICE_TIME_BUDGET_SECONDS,
            )
            plan = replace(plan, prices=priced.prices)
            timings["prices"] = ms_since(started)
        started = time.perf_counter()
        result, refused = match_plan_apply_quarantined(plan=plan, run_id=run.pk, now=now)
        timings["apply"] = ms_since(started)
        matching_run_finish(
            run_id=run.pk,
            plan=plan,
            result=result,
            left_out=[*snapshot.left_out, *unplannable, *refused],
            request_count=len(problem.requests) + len(problem.inference),
            listing_count=len(problem.listings),
            timings_ms=timings,
            finished_at=market_now(),
        )
        requests_held_note(held=snapshot.held)
        rows_left_out_note(shard=shard, left_out=[*snapshot.left_out, *unplannable, *refused])
        for code in selectors.shard_members(shard):
            listings_idle_publish(gpu_model_code=code, run_id=run.pk, now=now)
    except BaseException as exc:  # record even a soft time limit or a kill signal, then re-raise
        matching_run_fail(run_id=run.pk, error=repr(exc), finished_at=market_now())
        raise
    logger.info("round %s on %s: served %s replicas", run.pk, shard, result.served_replicas)
    return run.pk


def rounds_sweep(*, now: datetime) -> list[str]:
    """Beat's sweep: move the lifecycle on (``lifecycle_tick``), then return the shards that need a
    round: those with open work, and those with a run its dead worker left marked running (the
    round marks it lost). Makes up for any trigger a broker outage lost. Agents' silent nodes and
    late provisioning fail over first (``agents_sweep``), so the tick then sees what is left."""
    agents_sweep(now=now)
    lifecycle_tick(now=now)
    lost_before = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    return sorted(
        {*selectors.shards_with_open_work(now=now), *selectors.shards_with_lost_runs(started_before=lost_before)}
    )


# --- a round past its time limit ----------------------------------------------------------------


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


# --- the run's record ---------------------------------------------------------------------------


def matching_run_start(*, trigger: str, shard: str, now: datetime) -> MatchingRun:
    """Record that a round began (committed at once, so a crashed round stays visible)."""
    return MatchingRun.objects.create(trigger=trigger, shard=shard, started_at=now)


class UnservedEntry(TypedDict):
    """One entry of a run's ``unserved``: a request, the replicas the round did not place, and why,
    in words (``reason``) and as data (``blocked``, a :class:`matching.problem.Blocked`).

    An inference request's entry also holds ``tokens_per_second`` (the output tokens/s not placed);
    its ``replicas`` are those tokens/s in replicas of its first-choice alternative (the row's
    ``replicas`` for all it asked), rounded up: what ``matched_replicas`` leaves open."""

    request: int
    replicas: int
    reason: str
    blocked: Blocked
    tokens_per_second: NotRequired[float]


@transaction.atomic
def matching_run_finish(
    *,
    run_id: int,
    plan: Plan,
    result: ApplyResult,
    request_count: int,
    listing_count: int,
    timings_ms: dict[str, float],
    finished_at: datetime,
    left_out: Sequence[LeftOut] = (),
) -> MatchingRun:
    """Record a round's outcome: what it served, each unserved or stale request with why, and the
    rows it left out with why."""
    unserved: list[UnservedEntry] = [
        {"request": u.request_id, "replicas": u.replicas, "reason": u.reason, "blocked": u.blocked}
        for u in plan.unserved
    ]
    unserved += [
        {"request": a.request_id, "replicas": a.replicas, "reason": reason, "blocked": blocked_other()}
        for a, reason in result.stale
        if not a.tokens_per_second_per_replica
    ]
    stale_inference = [
        InferenceUnserved(a.request_id, a.tokens_per_second, reason, blocked_other())
        for a, reason in result.stale
        if a.tokens_per_second_per_replica
    ]
    unserved += _inference_unserved([*plan.inference_unserved, *stale_inference])
    run = MatchingRun.objects.select_for_update().get(pk=run_id)
    run.status = MatchingRun.Status.SUCCEEDED
    run.finished_at = max(finished_at, run.started_at)
    run.solver, run.objective, run.lower_bound, run.gap = plan.solver, plan.objective, plan.lower_bound, plan.gap
    run.request_count, run.listing_count = request_count, listing_count
    run.served_replicas = result.served_replicas
    run.unserved_replicas = sum(item["replicas"] for item in unserved)
    run.unserved, run.timings_ms = unserved, timings_ms
    run.left_out = [{"kind": row.kind, "id": row.id, "reason": row.reason} for row in left_out]
    run.save()
    clearing_prices_record(run=run, prices=plan.prices, recorded_at=run.finished_at)
    requests_unserved_publish(unserved, run_id=run.pk, now=finished_at)
    return run


def _inference_unserved(left: Sequence[InferenceUnserved]) -> list[UnservedEntry]:
    """The run's entries for the inference demand a round left unplaced (see :class:`UnservedEntry`):
    the plan's, and its stale assignments'; one query when there are any."""
    if not left:
        return []
    rows = BuyerRequest.objects.filter(pk__in={u.request_id for u in left})
    asked = {
        pk: (replicas, tps)
        for pk, replicas, tps in rows.values_list("pk", "replicas", "inference__output_tokens_per_second")
    }
    entries: list[UnservedEntry] = []
    for u in left:
        replicas, tokens = asked.get(u.request_id, (1, None))
        share = 1.0 if not tokens else min(1.0, u.tokens_per_second / float(tokens))
        entries.append(
            {
                "request": u.request_id,
                "replicas": max(1, math.ceil(replicas * share - 1e-9)),
                "reason": u.reason,
                "blocked": u.blocked,
                "tokens_per_second": round(u.tokens_per_second, 1),
            }
        )
    return entries


@transaction.atomic
def requests_held_note(*, held: Mapping[int, datetime]) -> None:
    """Tell each buyer whose request the look-ahead held (``held``: by id, when it re-enters the
    rounds) when it will be offered again. A value once written stays true until it passes (a held
    request re-enters exactly then), so nothing is cleared: pages show it only while it is ahead.
    One update per distinct moment (requests of one call period share it)."""
    by_moment: dict[datetime, list[int]] = defaultdict(list)
    for pk, until in held.items():
        by_moment[until].append(pk)
    for until, pks in sorted(by_moment.items()):
        BuyerRequest.objects.filter(pk__in=sorted(pks)).exclude(held_until=until).update(held_until=until)


@transaction.atomic
def rows_left_out_note(*, shard: str, left_out: Sequence[LeftOut]) -> None:
    """Tell each row's owner why the latest round of ``shard`` left it out, and forget the reason
    of rows it no longer leaves out. Requests, then listings: the lock order."""
    for model, kind in ((BuyerRequest, "request"), (Listing, "listing")):
        reasons = {row.id: row.reason for row in left_out if row.kind == kind}
        rows = model.objects.filter(gpu_model__code__in=selectors.shard_members(shard))
        rows.filter(left_out_reason__gt="").exclude(pk__in=list(reasons)).update(left_out_reason="")
        for pk, reason in sorted(reasons.items()):
            rows.filter(pk=pk).update(left_out_reason=reason)


def without(problem: Problem, left_out: Sequence[LeftOut]) -> Problem:
    """``problem`` without the rows the engine left out (the problem its plan was made for)."""
    requests = {row.id for row in left_out if row.kind == "request"}
    listings = {row.id for row in left_out if row.kind == "listing"}
    if not requests and not listings:
        return problem
    return replace(
        problem,
        requests=tuple(r for r in problem.requests if r.id not in requests),
        listings=tuple(x for x in problem.listings if x.id not in listings),
        inference=tuple(d for d in problem.inference if d.id not in requests),
    )


def gpu_form_view(problem: Problem, plan: Plan) -> tuple[Problem, Plan]:
    """``problem`` and ``plan`` as GPU-form demand alone sees them: no inference demand, and the
    listings' nodes without what the plan's inference assignments take (what clearing prices are
    computed on: :mod:`matching.prices` re-solves GPU-form requests only). Unchanged without
    inference demand."""
    if not problem.inference and not plan.inference_assignments:
        return problem, plan
    taken: dict[int, list[tuple[int, int]]] = {}
    for a in plan.inference_assignments:
        taken.setdefault(a.listing_id, []).extend((node, a.gpus_per_replica) for node in a.nodes)
    listings = []
    for listing in problem.listings:
        free = list(listing.node_free)
        for node, gpus in taken.get(listing.id, []):
            free[node] -= gpus
        listings.append(replace(listing, node_free=tuple(free)) if listing.id in taken else listing)
    return (
        replace(problem, listings=tuple(listings), inference=()),
        replace(plan, inference_assignments=(), inference_unserved=()),
    )


def matching_run_fail(*, run_id: int, error: str, finished_at: datetime) -> None:
    """Record that a round failed with ``error`` (its plan, if any, was rolled back)."""
    MatchingRun.objects.filter(pk=run_id, status=MatchingRun.Status.RUNNING).update(
        status=MatchingRun.Status.FAILED, error=error[:5000], finished_at=finished_at
    )


def matching_runs_lost_fail(*, shard: str, finished_at: datetime) -> int:
    """Record as failed ("worker lost") the runs still marked running whose shard shares a GPU model
    with ``shard``; how many.

    Precondition: the caller holds the lock of each GPU model of ``shard`` (``services.shard_lock``),
    so no live round sharing one can be running (it would hold that lock): a run still marked
    running lost its worker mid-round. Its plan was
    applied in one transaction, so either all its matches exist (they name the run) or, the far
    likelier case, none: the database rolled back what the dead worker never committed.
    """
    members = set(selectors.shard_members(shard))
    running = MatchingRun.objects.filter(status=MatchingRun.Status.RUNNING).values_list("pk", "shard")
    lost = [pk for pk, other in running if members & set(selectors.shard_members(other))]
    return MatchingRun.objects.filter(pk__in=lost, status=MatchingRun.Status.RUNNING).update(
        status=MatchingRun.Status.FAILED,
        error=WORKER_LOST,
        finished_at=Greatest(Value(finished_at, output_field=DateTimeField()), F("started_at")),
    )
