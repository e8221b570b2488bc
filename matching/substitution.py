"""Inference demand: a throughput target served by replicas of any of its alternatives, anywhere.

Pure Python, no Django. :func:`with_inference` wraps every planner
(:func:`matching.policies.planner`): the base planner plans the GPU-form requests first (the
problem with ``inference=()``: its plan is byte-identical to a round without inference demand),
then :func:`solve_inference` places inference demand on the capacity that plan left.

**Rules** (every policy keeps all of them): a replica is whole, on one node of a listing of its
alternative's GPU model with ``gpus_per_replica`` free GPUs (and among the alternative's measured
``listing_ids`` when it has them); within the alternative's RTT bound of the origin and its
per-replica price cap; window, start-by and reliability as the GPU form
(:mod:`matching.substitution_index`); Σ price × GPUs of the demand's replicas ≤ its budget per hour;
a replica is placed only while the demand's placed tokens/s are below its target (so placed −
the largest replica's tokens/s < target); a voucher's subsidy is capped by what is left of it after
the GPU-form plan.

**Policies**: ``engine`` serves the most tokens/s by priority (served = min(placed, target)), then
at least total cost (price − subsidy, × GPUs × hours), across GPU models and regions
(:mod:`matching.substitution_engine`: exact MILP on small rounds; elsewhere greedy covers, planned
again at the Lagrangian bound's capacity prices; its bounds in the stats); ``nearest``: each
demand in arrival order (priority, then id) fills its first-choice alternative
(``alternatives[0]``) from the nearest feasible listing; ``cheapest``: each demand in arrival order
takes the cheapest per million tokens first, across its alternatives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from matching import costs
from matching.gc_pause import cyclic_gc_paused
from matching.inference_quote import MTOK_PER_TOKEN_PER_SECOND_HOUR, QUEUEING_MARGIN_MS, Alternative, budget_per_hour
from matching.latency import latency_class_of
from matching.problem import AlternativeCost, Assignment, InferenceAlternative, InferenceUnserved, Plan, Problem
from matching.substitution_engine import engine_policy
from matching.substitution_explain import alternative_costs, explain, unserved_words
from matching.substitution_round import Round, Stats, cheapest_policy, nearest_policy
from matching.timings import ms_since

ENGINE, NEAREST, CHEAPEST = "engine", "nearest", "cheapest"
Planner = Callable[[Problem], Plan]
POLICY_WORDS = {
    ENGINE: "the cheapest way to serve the round's demand by priority, across GPU models and regions",
    NEAREST: "the nearest free listing of the first-choice alternative",
    CHEAPEST: "the cheapest per million tokens left when this demand's turn came",
}


def _solver_name(policy: str) -> str:
    return {NEAREST: "inference-nearest-first", CHEAPEST: "inference-cheapest-first"}.get(policy, policy)


def solve_inference(
    problem: Problem,
    node_free: dict[int, tuple[int, ...]] | None = None,
    *,
    policy: str = ENGINE,
    voucher_spent: dict[str, Decimal] | None = None,
) -> tuple[tuple[Assignment, ...], tuple[InferenceUnserved, ...], Stats]:
    """Place ``problem.inference`` on ``node_free`` (listing id → free GPUs per node; None: the
    listings' own) under ``policy``; the GPU-form requests of ``problem`` are ignored.

    ``voucher_spent`` (code → CNY): subsidy already promised by the round's GPU-form plan, taken off
    each voucher's remaining value. Returns the assignments (one per demand, alternative and
    listing, in demand id then listing order), what was left unserved, and the run's stats: tokens
    asked / placed / served (min(placed, target)) / upper bound, cost and its lower bound (CNY over
    the demands' durations), gap, solver and timings (ms).
    """
    with cyclic_gc_paused():
        return _solve_inference(problem, node_free, policy, voucher_spent)


def _solve_inference(
    problem: Problem,
    node_free: dict[int, tuple[int, ...]] | None,
    policy: str,
    voucher_spent: dict[str, Decimal] | None,
) -> tuple[tuple[Assignment, ...], tuple[InferenceUnserved, ...], Stats]:
    started = time.perf_counter()
    rnd = Round(problem, node_free)
    prepared = ms_since(started)
    stats: Stats
    if policy == ENGINE:
        stats = engine_policy(rnd)
    elif policy == NEAREST:
        nearest_policy(rnd)
        stats = {}
    elif policy == CHEAPEST:
        cheapest_policy(rnd)
        stats = {}
    else:
        raise ValueError(f"unknown policy {policy!r}; choose one of {ENGINE}, {NEAREST}, {CHEAPEST}")
    solved = ms_since(started)
    lines = _capped(rnd, _assignments(rnd), voucher_spent or {})
    assignments = _explained(rnd, lines, POLICY_WORDS[policy])
    unserved = _unserved(rnd)
    cost = sum((_total(rnd, a) for a in assignments), Decimal("0.0000"))
    asked = sum(d.tokens_per_second for d in rnd.demands)
    served = sum(min(p, d.tokens_per_second) for p, d in zip(rnd.placed, rnd.demands, strict=True))
    lower = Decimal(str(stats.get("cost_lower_bound", "0")))
    out: Stats = {
        "solver": str(stats.get("solver", _solver_name(policy))),
        "demands": len(rnd.demands),
        "tokens_asked": round(asked, 1),
        "tokens_placed": round(sum(rnd.placed), 1),
        "tokens_served": round(served, 1),
        "tokens_upper_bound": round(float(stats.get("tokens_upper_bound", asked)), 1),
        "cost": str(cost),
        "cost_lower_bound": str(lower),
        "gap": _gap(cost, lower),
        **{k: v for k, v in stats.items() if k not in ("solver", "tokens_upper_bound", "cost_lower_bound")},
        "prepare_ms": prepared,
        "solve_ms": round(solved - prepared, 2),
        "total_ms": ms_since(started),
    }
    return tuple(assignments), tuple(unserved), out


def _gap(cost: Decimal, lower: Decimal) -> float:
    if cost == lower:
        return 0.0
    return float("inf") if lower <= 0 else float(cost / lower - 1)


def _total(rnd: Round, a: Assignment) -> Decimal:
    return a.cost_per_gpu_hour * a.gpus * rnd.hours[a.request_id]


#: (demand index, alternative index, assignment)
Line = tuple[int, int, Assignment]


#: The subsidy of a demand without a voucher.
_NO_SUBSIDY = costs.from_units(0)


def _assignments(rnd: Round) -> list[Line]:
    problem, out = rnd.problem, []
    # A listing's price, energy cost and start, the same in each of its assignments: made once.
    by_listing: dict[int, tuple[Decimal, Decimal, datetime]] = {}
    for i, k, j in sorted(rnd.placements, key=lambda key: (rnd.demands[key[0]].id, key[2], key[1])):
        nodes = rnd.placements[i, k, j]
        if not nodes:
            continue
        demand, listing = rnd.demands[i], problem.listings[j]
        alt = demand.alternatives[k]
        rtt = float(rnd.index.rtt[rnd.index.rix[demand.origin], rnd.index.region[j]])
        terms = by_listing.get(j)
        if terms is None:
            terms = by_listing[j] = (
                costs.money(listing.price_per_gpu_hour),
                costs.money(listing.energy_cost_per_gpu_hour),
                costs.start_on(listing, problem.now),
            )
        price, energy, starts_at = terms
        subsidy = costs.from_units(int(rnd.index.subsidy(demand)[j])) if demand.voucher is not None else _NO_SUBSIDY
        out.append(
            (
                i,
                k,
                Assignment(
                    request_id=demand.id,
                    listing_id=listing.id,
                    region=listing.region,
                    replicas=len(nodes),
                    gpus_per_replica=alt.gpus_per_replica,
                    nodes=tuple(sorted(nodes)),
                    price_per_gpu_hour=price,
                    subsidy_per_gpu_hour=subsidy,
                    energy_cost_per_gpu_hour=energy,
                    rtt_ms=rtt,
                    latency_class=latency_class_of(rtt),
                    cost_per_gpu_hour=price - subsidy,
                    starts_at=starts_at,
                    precision=alt.precision,
                    tokens_per_second_per_replica=alt.tokens_per_second_per_replica,
                    ttft_ms=rtt + QUEUEING_MARGIN_MS + alt.prefill_ms,
                ),
            )
        )
    return out


def _capped(rnd: Round, lines: list[Line], spent: dict[str, Decimal]) -> list[Line]:
    """Cut subsidies so no voucher pays more than what is left of it (as :func:`matching.assemble.cap_vouchers`)."""
    left: dict[str, Decimal] = {}
    by_id = {d.id: d for d in rnd.demands}
    for d in rnd.demands:
        if d.voucher is not None:
            value = d.voucher.remaining_value - spent.get(d.voucher.code, Decimal(0))
            left[d.voucher.code] = min(left.get(d.voucher.code, value), value)
    out = []
    for i, k, a in lines:
        voucher = by_id[a.request_id].voucher
        if voucher is None or a.subsidy_per_gpu_hour == 0:
            out.append((i, k, a))
            continue
        hours = a.gpus * by_id[a.request_id].duration_hours
        budget = max(left[voucher.code], Decimal(0))
        paid = a.subsidy_per_gpu_hour
        if paid * hours > budget:
            paid = (budget / hours).quantize(costs.MONEY_QUANTUM, rounding=ROUND_DOWN)
        left[voucher.code] = budget - paid * hours
        if paid != a.subsidy_per_gpu_hour:
            a = replace(a, subsidy_per_gpu_hour=paid, cost_per_gpu_hour=a.price_per_gpu_hour - paid)
        out.append((i, k, a))
    return out


def _explained(rnd: Round, lines: list[Line], words: str) -> list[Assignment]:
    others: dict[int, list[AlternativeCost]] = {}
    cache: dict[tuple[object, ...], AlternativeCost] = {}
    texts: dict[int, tuple[str, str, str]] = {}
    out = []
    if rnd.batch is not None:  # (the frontiers' candidates made at once, not one by one as read)
        at, shown = rnd.batch.offset.tolist(), dict.fromkeys(i for i, _, _ in lines)
        rnd.batch.options.make([at[i] + k for i in shown for k in rnd.frontier(i) or ()])
    for i, k, a in lines:
        if i not in others:
            others[i] = alternative_costs(rnd.demands[i], rnd.options[i], cache, rnd.frontier(i))
        demand = rnd.demands[i]
        # Filled in place: the assignment's own explanation dict, made empty with it just before
        # (a dataclasses.replace per assignment cost ~0.1 s at 10k demands).
        a.explanation.update(explain(demand, demand.alternatives[k], a, others[i], words, texts))
        out.append(a)
    return out


def _unserved(rnd: Round) -> list[InferenceUnserved]:
    out = []
    short = [i for i, d in enumerate(rnd.demands) if rnd.placed[i] < d.tokens_per_second]
    if rnd.batch is not None:  # (their candidates made at once: the words read every one)
        rnd.batch.options.make_demands(short)
    for i in short:
        d = rnd.demands[i]
        reason, blocked = unserved_words(d, rnd.options[i], rnd.placed[i], rnd.budget_bound(i))
        out.append(InferenceUnserved(d.id, d.tokens_per_second - rnd.placed[i], reason, blocked))
    return sorted(out, key=lambda u: u.request_id)


def per_replica_cap(max_price_per_million_tokens: Decimal, tokens_per_second_per_replica: float, gpus: int) -> Decimal:
    """An alternative's price cap per GPU-hour: cap per Mtok × 0.0036 × tokens/s per replica ÷ GPUs per
    replica, down to the money quantum (one replica's tokens cost at most the cap per Mtok)."""
    per_hour = (
        max_price_per_million_tokens * MTOK_PER_TOKEN_PER_SECOND_HOUR * Decimal(str(tokens_per_second_per_replica))
    )
    return (per_hour / gpus).quantize(costs.MONEY_QUANTUM, rounding=ROUND_DOWN)


def engine_alternatives(
    alternatives: Sequence[Alternative], max_price_per_million_tokens: Decimal
) -> tuple[InferenceAlternative, ...]:
    """The quote's alternatives (:func:`matching.inference_quote.alternatives_of`) the engine may
    place, in the given order, with their per-replica caps; blocked ones (no fit, prefill over the
    TTFT) are left out, and so are those whose cap rounds down to nothing (no listing is that cheap)."""
    engine = (
        InferenceAlternative(
            gpu_model=a.gpu_model,
            gpus_per_replica=a.gpus_per_replica,
            precision=a.precision,
            source=a.source,
            tokens_per_second_per_replica=a.tokens_per_second_per_replica,
            prefill_ms=a.prefill_ms,
            rtt_bound_ms=a.rtt_bound_ms,
            max_price_per_gpu_hour=per_replica_cap(
                max_price_per_million_tokens, a.tokens_per_second_per_replica, a.gpus_per_replica
            ),
            listing_ids=a.listing_ids,
        )
        for a in alternatives
        if a.fits and not a.blocked
    )
    return tuple(a for a in engine if a.max_price_per_gpu_hour > 0)


def demand_budget(max_price_per_million_tokens: Decimal, tokens_per_second: Decimal) -> Decimal:
    """An :class:`InferenceDemand`'s ``budget_per_hour``: the rule's budget
    (:func:`matching.inference_quote.budget_per_hour`) down to the money quantum, so the engine never
    plans past the buyer's cap."""
    return budget_per_hour(max_price_per_million_tokens, tokens_per_second).quantize(
        costs.MONEY_QUANTUM, rounding=ROUND_DOWN
    )


def left_after(problem: Problem, plan: Plan) -> dict[int, tuple[int, ...]]:
    """Free GPUs per node of every listing after ``plan``'s GPU-form assignments."""
    free = {x.id: list(x.node_free) for x in problem.listings}
    for a in plan.assignments:
        if a.listing_id in free:  # (a pre-empted match's virtual listing is not free capacity now)
            for node in a.nodes:
                free[a.listing_id][node] -= a.gpus_per_replica
    return {k: tuple(v) for k, v in free.items()}


def voucher_spent(problem: Problem, plan: Plan) -> dict[str, Decimal]:
    """Subsidy (CNY) ``plan``'s GPU-form assignments take from each voucher code."""
    by_id = {r.id: r for r in problem.requests}
    out: dict[str, Decimal] = {}
    for a in plan.assignments:
        request = by_id.get(a.request_id)
        if request is not None and request.voucher is not None and a.subsidy_per_gpu_hour:
            spent = a.subsidy_per_gpu_hour * a.gpus * request.duration_hours
            out[request.voucher.code] = out.get(request.voucher.code, Decimal(0)) + spent
    return out


def with_inference(problem: Problem, base: Planner, policy: str = ENGINE) -> Plan:
    """``base``'s plan of the GPU-form requests, plus ``problem.inference`` placed by ``policy`` on
    the capacity that plan left. Without inference demand: exactly ``base(problem)``."""
    if not problem.inference:
        return base(problem)
    plan = base(replace(problem, inference=()))
    assignments, unserved, stats = solve_inference(
        problem, left_after(problem, plan), policy=policy, voucher_spent=voucher_spent(problem, plan)
    )
    merged: dict[str, int | str] = dict(plan.stats)
    for key, value in stats.items():
        if key.endswith("_ms"):
            continue
        merged[f"inference_{key}"] = value if isinstance(value, (int, str)) else repr(value)
    timings = {**plan.timings_ms, **{f"inference_{k[:-3]}": float(v) for k, v in stats.items() if k.endswith("_ms")}}
    return replace(
        plan,
        inference_assignments=assignments,
        inference_unserved=unserved,
        stats=merged,
        timings_ms=timings,
    )
