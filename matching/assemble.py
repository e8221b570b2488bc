"""Turn placements ((request, listing) → nodes) into a :class:`Plan`: assignments, voucher caps, reasons, totals.

Shared by the solver and the greedy baseline so both are priced and explained identically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

import numpy as np
from numpy.typing import NDArray

from matching import costs
from matching.explain import ExplainIndex, explain_assignment, unserved_reason
from matching.graph.components import Graph
from matching.graph.edges import Arrays, price_pairs
from matching.latency import LatencyClass, latency_class_of
from matching.packing.transport import NodePool
from matching.problem import Assignment, Explanation, Plan, Problem, Unserved
from matching.timings import ms_since


@dataclass
class Priced:
    """Assignments of a set of placements after voucher caps, and what they cost in total."""

    assignments: list[Assignment]
    cuts: int
    cut_cny: Decimal
    objective: Decimal
    binding: frozenset[str]  # voucher codes whose budget cut some subsidy


def price(problem: Problem, arrays: Arrays, placements: dict[tuple[int, int], list[int]]) -> Priced:
    """Assignments with full subsidies (from ``arrays``), capped by voucher budgets, and their total."""
    full = _assignments(problem, arrays, placements)
    assignments, cuts, cut_cny = cap_vouchers(problem, full)
    by_id = {r.id: r for r in problem.requests}
    objective = sum((total_cost(a, by_id[a.request_id].duration_hours) for a in assignments), Decimal("0.0000"))
    # Only an assignment whose request holds a voucher is ever cut (replaced).
    binding = frozenset(
        v.code
        for a, b in zip(full, assignments, strict=True)
        if a is not b and (v := by_id[a.request_id].voucher) is not None
    )
    return Priced(assignments, cuts, cut_cny, objective, binding)


def assemble(
    problem: Problem,
    arrays: Arrays,
    graph: Graph,
    placements: dict[tuple[int, int], list[int]],
    pool: NodePool,
    *,
    solver: str,
    lower_bound: Decimal,
    stats: dict[str, int | str],
    timings: dict[str, float],
    priced: Priced | None = None,
) -> Plan:
    """The plan for ``placements``; ``pool`` is the capacity left after them (for explanations).

    Voucher budgets are enforced here (see :func:`cap_vouchers`) unless ``priced`` (from
    :func:`price`) is given; ``objective`` is what the assignments actually cost, so it is never
    below ``lower_bound`` when that bound is valid.
    """
    t0 = time.perf_counter()
    priced = priced or price(problem, arrays, placements)
    assignments, cuts, cut_cny, objective = priced.assignments, priced.cuts, priced.cut_cny, priced.objective
    index = ExplainIndex(problem, arrays, residual=pool.free)
    assignments = _explained(problem, index, assignments)
    unserved = _unserved(problem, index, graph.has_edge, assignments)
    timings = {**timings, "explain": ms_since(t0)}
    served = sum(a.replicas for a in assignments)
    stats = {
        **stats,
        "voucher_cuts": cuts,
        "voucher_cut_cny": str(cut_cny),
        "served_gpus": sum(a.gpus for a in assignments),
        "edges": graph.pairs,
        "reservation_cny": str(reservation_total(problem, assignments)),
    }
    return Plan(
        assignments=tuple(assignments),
        unserved=tuple(unserved),
        solver=solver,
        objective=objective,
        lower_bound=lower_bound,
        gap=gap_of(objective, lower_bound),
        served_replicas=served,
        timings_ms=timings,
        stats=stats,
    )


def gap_of(objective: Decimal, lower_bound: Decimal) -> float:
    """objective / lower_bound − 1; 0 when both are 0, infinite when only the bound is 0."""
    if objective == lower_bound:
        return 0.0
    if lower_bound <= 0:
        return float("inf")
    return float(objective / lower_bound - 1)


def total_cost(a: Assignment, duration_hours: int) -> Decimal:
    """What an assignment costs the engine over its duration: (cost + the look-ahead's reservation
    premium) per GPU-hour × GPUs × hours."""
    return (a.cost_per_gpu_hour + a.reservation_per_gpu_hour) * a.gpus * duration_hours


def reservation_total(problem: Problem, assignments: list[Assignment] | tuple[Assignment, ...]) -> Decimal:
    """The look-ahead's reservation premiums in an objective, CNY (0 without look-ahead)."""
    hours = {r.id: r.duration_hours for r in problem.requests}
    return sum((a.reservation_per_gpu_hour * a.gpus * hours[a.request_id] for a in assignments), Decimal("0.0000"))


def _assignments(problem: Problem, arrays: Arrays, placements: dict[tuple[int, int], list[int]]) -> list[Assignment]:
    """One assignment per placed (request, listing) pair, in (request index, listing index) order."""
    keys = sorted(placements)
    if not keys:
        return []
    priced = price_pairs(arrays, [k[0] for k in keys], [k[1] for k in keys])
    terms = zip(
        (priced.cost - priced.reservation).tolist(),
        priced.subsidy.tolist(),
        priced.rtt.tolist(),
        priced.reservation.tolist(),
        strict=True,
    )
    listing_terms: dict[int, tuple[Decimal, Decimal, datetime]] = {}  # the Decimal work, once per listing
    money: dict[int, Decimal] = {}  # units → Decimal, once per distinct value
    classes: dict[float, LatencyClass] = {}
    out = []
    for (i, j), (cost, subsidy, rtt, reservation) in zip(keys, terms, strict=True):
        for units in (cost, subsidy, reservation):
            if units not in money:
                money[units] = costs.from_units(units)
        if rtt not in classes:
            classes[rtt] = latency_class_of(rtt)
        if j not in listing_terms:
            x = problem.listings[j]
            listing_terms[j] = (
                costs.money(x.price_per_gpu_hour),
                costs.money(x.energy_cost_per_gpu_hour),
                costs.start_on(x, problem.now),
            )
        price, energy, starts_at = listing_terms[j]
        request, listing, nodes = problem.requests[i], problem.listings[j], placements[i, j]
        out.append(
            Assignment(
                request_id=request.id,
                listing_id=listing.id,
                region=listing.region,
                replicas=len(nodes),
                gpus_per_replica=request.gpus_per_replica,
                nodes=tuple(nodes),
                price_per_gpu_hour=price,
                subsidy_per_gpu_hour=money[subsidy],
                energy_cost_per_gpu_hour=energy,
                rtt_ms=rtt,
                latency_class=classes[rtt],
                cost_per_gpu_hour=money[cost],
                starts_at=starts_at,
                reservation_per_gpu_hour=money[reservation],
            )
        )
    return out


def cap_vouchers(problem: Problem, assignments: list[Assignment]) -> tuple[list[Assignment], int, Decimal]:
    """Cut subsidies so no voucher pays more than its ``remaining_value`` across the round.

    Per voucher code, assignments keep their full subsidy in (request id, listing id) order until
    the budget runs out; the one that crosses it gets what is left (rounded down to 0.0001 CNY per
    GPU-hour), later ones get none, and their cost per GPU-hour rises by the cut. The total paid is
    min(budget, full subsidy) whichever assignments receive it. Returns the assignments, the
    number of cuts and the subsidy cut in CNY (what the budgets added to the objective).
    """
    by_id = {r.id: r for r in problem.requests}
    left: dict[str, Decimal] = {}
    for r in problem.requests:
        if r.voucher is not None:
            left[r.voucher.code] = min(left.get(r.voucher.code, r.voucher.remaining_value), r.voucher.remaining_value)
    out, cuts, cut_cny = [], 0, Decimal(0)
    for a in assignments:
        voucher = by_id[a.request_id].voucher
        if voucher is None or a.subsidy_per_gpu_hour == 0:
            out.append(a)
            continue
        hours = a.gpus * by_id[a.request_id].duration_hours
        full = a.subsidy_per_gpu_hour * hours
        budget = max(left[voucher.code], Decimal(0))
        paid = (
            a.subsidy_per_gpu_hour
            if full <= budget
            else (budget / hours).quantize(costs.MONEY_QUANTUM, rounding=ROUND_DOWN)
        )
        left[voucher.code] = budget - paid * hours
        if paid != a.subsidy_per_gpu_hour:
            cuts += 1
            cut_cny += (a.subsidy_per_gpu_hour - paid) * hours
            a = replace(
                a, subsidy_per_gpu_hour=paid, cost_per_gpu_hour=a.cost_per_gpu_hour + a.subsidy_per_gpu_hour - paid
            )
        out.append(a)
    return out, cuts, cut_cny


def _explained(problem: Problem, index: ExplainIndex, assignments: list[Assignment]) -> list[Assignment]:
    row = {r.id: i for i, r in enumerate(problem.requests)}
    col = {x.id: j for j, x in enumerate(problem.listings)}
    used: dict[int, set[int]] = {}
    dearest: dict[int, Decimal] = {}
    for a in assignments:
        used.setdefault(a.request_id, set()).add(col[a.listing_id])
        dearest[a.request_id] = max(dearest.get(a.request_id, a.cost_per_gpu_hour), a.cost_per_gpu_hour)
    return [
        _with_explanation(a, explain_assignment(index, row[a.request_id], a, used[a.request_id], dearest[a.request_id]))
        for a in assignments
    ]


def _with_explanation(a: Assignment, explanation: Explanation) -> Assignment:
    """A copy of ``a`` carrying ``explanation``. (``dataclasses.replace`` re-runs ``__init__`` over
    every field, ~10x slower, which shows at thousands of assignments per round.)"""
    out = object.__new__(Assignment)
    out.__dict__.update(a.__dict__, explanation=explanation)
    return out


def _unserved(
    problem: Problem, index: ExplainIndex, has_edge: NDArray[np.bool_], assignments: list[Assignment]
) -> list[Unserved]:
    placed: dict[int, int] = {}
    for a in assignments:
        placed[a.request_id] = placed.get(a.request_id, 0) + a.replicas
    out = []
    for i, r in enumerate(problem.requests):
        done = placed.get(r.id, 0)
        if done < r.replicas:
            reason, blocked = unserved_reason(index, i, done, bool(has_edge[i]))
            out.append(Unserved(request_id=r.id, replicas=r.replicas - done, reason=reason, blocked=blocked))
    return sorted(out, key=lambda u: u.request_id)
