"""The interruptible tier: idle GPUs sold at a listing's floor to demand that accepts pre-emption.

:func:`with_tiers` wraps any plan builder (the engine's :func:`matching.solver.solve`, or a
baseline) and is the only place the tier's rules live:

1. **On-demand first, with pre-emption priced in.** The on-demand requests are solved alone, on
   the free capacity plus one *virtual listing* per running interruptible match: the GPUs the match
   holds, on its listing's nodes, free from ``free_at`` (its notice's end), at the listing's price,
   with a pre-emption penalty added to the engine's cost (never to the price, so never against a
   request's price cap: an on-demand request that can pay the list price may pre-empt). The
   penalty is the match's own price per GPU-hour: each
   on-demand GPU-hour placed there stops an interruptible GPU-hour worth that much. So the
   optimum uses free capacity first and, when it must pre-empt, the cheapest interruptible
   GPU-hours, and only as many as the on-demand demand needs. Any match whose virtual listing is
   used is pre-empted (:class:`matching.problem.Preemption`); its on-demand requests wait (listed
   unserved, with why) and are placed by the first round after the notice ends, when the GPUs are
   free. A match already serving its notice is offered with a penalty of one 0.0001 CNY unit (its
   GPUs are promised already; capacity free now still wins a tie), and is not pre-empted again.
2. **Interruptible after.** The interruptible requests are solved alone on what the on-demand plan
   left free, on the listings that offer the tier, each listing's price replaced by its floor. A
   request reaches a listing only if the floor is within its bid (``max_price_per_gpu_hour``, the
   engine's price cap) and it **pays the floor**: never above its bid, never below the floor.
   Virtual listings are never offered to interruptible demand.

Interruptible demand is thus a lower priority level than any on-demand demand, and on-demand
demand never pays more because of the tier (its plan does not depend on interruptible demand).
With no interruptible request and no running interruptible match, :func:`with_tiers` is exactly
the wrapped builder. Approximations (see ``docs/interruptible.md``): the penalty is linear per
GPU-hour taken, while taking any GPU of a match stops all of it; a replica placed on a pre-empted
match's GPUs uses only that match's GPUs (not the node's other free GPUs); the voucher rules see
the virtual listing's price.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

from matching import costs
from matching.problem import (
    Assignment,
    ListingSpec,
    Plan,
    Preemption,
    Problem,
    RequestSpec,
    RunningInterruptible,
    Unserved,
)

Planner = Callable[[Problem], Plan]

#: A match already serving its notice costs this much more per GPU-hour than the listing's price:
#: its pre-emption is sunk, but capacity free now should still win a tie.
NOTICE_GIVEN_PENALTY = costs.money(Decimal("0.0001"))
NO_TIER = "no listing offers the interruptible tier with a floor within its bid and free GPUs after on-demand demand"


def with_tiers(problem: Problem, base: Planner) -> Plan:
    """``base``'s plan for ``problem`` with the interruptible tier's rules (module docstring)."""
    interruptible = tuple(r for r in problem.requests if r.interruptible)
    if not interruptible and not problem.running_interruptible:
        return base(problem)
    on_demand = tuple(r for r in problem.requests if not r.interruptible)
    virtual = {-(k + 1): running for k, running in enumerate(problem.running_interruptible)}
    first = base(
        replace(
            problem,
            requests=on_demand,
            listings=problem.listings + tuple(virtual_listing(k, m) for k, m in virtual.items()),
            running_interruptible=(),
        )
    )
    kept = tuple(a for a in first.assignments if a.listing_id > 0)
    waiting = [a for a in first.assignments if a.listing_id < 0]
    second = _interruptible_plan(problem, interruptible, kept, base)
    return _merged(first, kept, waiting, virtual, second, interruptible)


def virtual_listing(virtual_id: int, running: RunningInterruptible) -> ListingSpec:
    """A running interruptible match's GPUs as a listing of their own (id ``virtual_id`` < 0):
    on-demand demand only, free from ``free_at``, at the listing's price, the pre-emption penalty
    in the engine's cost."""
    listing = running.listing
    held = [0] * len(listing.node_free)
    for node in running.nodes:
        held[node] += running.gpus_per_replica
    return replace(
        listing,
        id=virtual_id,
        node_free=tuple(held),
        preemption_penalty_per_gpu_hour=preemption_penalty(running),
        available_from=max(listing.available_from, running.free_at),
        interruptible_floor_price_per_gpu_hour=None,
    )


def preemption_penalty(running: RunningInterruptible) -> Decimal:
    """CNY per GPU-hour an on-demand request is charged, in the engine's cost, for taking the match's
    GPUs: the interruptible work it stops, at the match's price (a pre-emption already given: sunk)."""
    return NOTICE_GIVEN_PENALTY if running.notice_given else running.price_per_gpu_hour


def tier_listing(listing: ListingSpec, node_free: tuple[int, ...]) -> ListingSpec | None:
    """``listing`` as interruptible demand sees it: its floor as the price, ``node_free`` left by the
    on-demand plan; ``None`` when it does not offer the tier or has nothing free."""
    floor = listing.interruptible_floor_price_per_gpu_hour
    if floor is None or not any(node_free):
        return None
    return replace(listing, node_free=node_free, price_per_gpu_hour=floor)


def _interruptible_plan(
    problem: Problem, interruptible: tuple[RequestSpec, ...], kept: tuple[Assignment, ...], base: Planner
) -> Plan | None:
    if not interruptible:
        return None
    left = {x.id: list(x.node_free) for x in problem.listings}
    for a in kept:
        for node in a.nodes:
            left[a.listing_id][node] -= a.gpus_per_replica
    listings = tuple(tier for x in problem.listings if (tier := tier_listing(x, tuple(left[x.id]))) is not None)
    if not listings:
        return None
    return base(replace(problem, requests=interruptible, listings=listings, running_interruptible=()))


def _merged(
    first: Plan,
    kept: tuple[Assignment, ...],
    waiting: list[Assignment],
    virtual: dict[int, RunningInterruptible],
    second: Plan | None,
    interruptible: tuple[RequestSpec, ...],
) -> Plan:
    """One plan: the on-demand assignments on free capacity, the pre-emptions and their waiting
    replicas, and the interruptible plan (or every interruptible request unserved, when none ran)."""
    by_match: dict[int, list[int]] = {}
    unserved = list(first.unserved)
    for a in waiting:
        running = virtual[a.listing_id]
        by_match.setdefault(running.match_id, []).append(a.request_id)
        unserved.append(Unserved(a.request_id, a.replicas, _waiting_reason(running)))
    preempted = tuple(
        Preemption(m.match_id, m.listing.id, tuple(sorted(set(by_match[m.match_id]))), m.free_at)
        for m in virtual.values()
        if m.match_id in by_match and not m.notice_given
    )
    if second is None:
        unserved += [Unserved(r.id, r.replicas, NO_TIER) for r in interruptible if r.replicas > 0]
        assignments, extra_objective, extra_bound = kept, Decimal(0), Decimal(0)
    else:
        unserved += second.unserved
        assignments = kept + second.assignments
        extra_objective, extra_bound = second.objective, second.lower_bound
    objective = first.objective + extra_objective
    lower_bound = first.lower_bound + extra_bound
    stats = dict(first.stats)
    stats["preempted"] = len(preempted)
    stats["waiting_on_notice_replicas"] = sum(a.replicas for a in waiting)
    if second is not None:
        stats["interruptible_solver"] = second.solver
        stats["interruptible_served_replicas"] = second.served_replicas
    timings = dict(first.timings_ms)
    if second is not None:
        timings.update({f"interruptible_{k}": v for k, v in second.timings_ms.items()})
    return replace(
        first,
        assignments=assignments,
        unserved=tuple(unserved),
        objective=objective,
        lower_bound=lower_bound,
        gap=float(objective / lower_bound - 1) if lower_bound > 0 else 0.0,
        served_replicas=sum(a.replicas for a in assignments),
        timings_ms=timings,
        stats=stats,
        preempted=preempted,
    )


def _waiting_reason(running: RunningInterruptible) -> str:
    when = running.free_at.isoformat(timespec="seconds")
    return (
        f"waits for the GPUs of interruptible match {running.match_id} on listing {running.listing.id}, "
        f"pre-empted, free at {when}"
    )


def on_demand_view(problem: Problem, plan: Plan) -> tuple[Problem, Plan]:
    """``problem`` and ``plan`` with only on-demand demand: what clearing prices are computed on
    (:mod:`matching.prices` re-solves with the plain engine, which knows no tier)."""
    interruptible = {r.id for r in problem.requests if r.interruptible}
    if not interruptible and not problem.running_interruptible:
        return problem, plan
    return (
        replace(
            problem,
            requests=tuple(r for r in problem.requests if r.id not in interruptible),
            running_interruptible=(),
        ),
        replace(plan, assignments=tuple(a for a in plan.assignments if a.request_id not in interruptible)),
    )
