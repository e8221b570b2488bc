"""Clearing prices: what one more unit of a listing's capacity would have been worth to the round.

Definitions (docs/economics.md says the same in plain words, with a worked example):

- A round's *surplus* is ``S = Σ (cap_i − cost_ij) × GPUs × hours`` over its assignments, where
  ``cap_i`` is the request's ``max_price_per_gpu_hour`` and ``cost_ij`` the engine's edge cost
  (price − subsidy + latency weight × RTT). The engine maximises served GPUs by priority, then
  minimises cost; at equal service, less cost is exactly more surplus, and a replica served in
  addition adds its buyer's cap minus what it costs. ``S`` is the single number that measures both.
- A listing's *unit* is one replica of the smallest size that its component's requests want and
  its nodes can hold (one GPU for 1-GPU work).
- A listing is *spare* when, after the round, one of its nodes still has a unit free: one more unit
  would change nothing, so its rent is 0.
- Otherwise its *scarcity rent* (CNY per GPU-hour) is the exact finite difference
  ``max(0, S(+1 unit) − S) / ΔGPU-hours``: the listing's component is solved again with one more
  node of one unit on that listing, and the gain in surplus is divided by the GPU-hours the listing
  sold in addition (0 when the extra unit is not used). Both solves are the engine's own
  (:func:`matching.solver.solve` on the component's requests and listings), so the rent is what the
  engine would really have done with the unit, never an estimate.
- The listing's *clearing price* is its ask plus its rent: what the marginal GPU-hour on it is worth
  to the market. A spare listing clears at its ask.

The solves cost time, so at most ``max_resolves`` saturated listings are priced per round (in the
order of the problem's listings), only in components of at most ``max_component_requests`` requests,
and no new re-solve starts once ``budget_seconds`` have passed; the others get ``rent = None``
(unavailable), never a guess. The budgets decide only *which* listings are priced, never a price:
with ``budget_seconds=None`` the result is deterministic.
A voucher's round budget is taken whole within the component, as :func:`matching.solver.solve`
does for one shard.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, replace
from decimal import Decimal

from matching import costs
from matching.graph.components import feasibility, find_components
from matching.graph.edges import build_arrays
from matching.problem import ListingPrice, Plan, Problem, sold_gpu_hours
from matching.solver import solve

#: Saturated listings priced by re-solving, per round, by default (a bound on the added solve time).
MAX_RESOLVES = 16
#: Components with more requests than this are not re-solved (their saturated listings' rents are
#: unavailable): one re-solve of a component of 1,000 requests costs ~30 ms, of 10,000 ~1 s.
MAX_COMPONENT_REQUESTS = 2_000


def surplus(problem: Problem, plan: Plan) -> Decimal:
    """``Σ (cap − cost) × GPUs × hours`` over ``plan``'s assignments, CNY."""
    requests = {r.id: r for r in problem.requests}
    total = Decimal(0)
    for a in plan.assignments:
        r = requests[a.request_id]
        total += (r.max_price_per_gpu_hour - a.cost_per_gpu_hour) * a.gpus * r.duration_hours
    return total


def free_after(problem: Problem, plan: Plan) -> dict[int, list[int]]:
    """Each listing's free GPUs per node once ``plan`` is applied, by listing id (one pass)."""
    free = {listing.id: list(listing.node_free) for listing in problem.listings}
    for a in plan.assignments:
        nodes = free.get(a.listing_id)
        if nodes is None:  # a listing left out of ``problem`` (quarantined)
            continue
        for node in a.nodes:
            nodes[node] -= a.gpus_per_replica
    return free


def clearing_prices(
    problem: Problem,
    plan: Plan,
    *,
    max_resolves: int = MAX_RESOLVES,
    max_component_requests: int = MAX_COMPONENT_REQUESTS,
    budget_seconds: float | None = None,
) -> tuple[ListingPrice, ...]:
    """Every listing's rent and clearing price after ``plan`` (the engine's plan for ``problem``)."""
    arrays = build_arrays(problem)
    components = find_components(problem, arrays, feasibility(problem, arrays))
    component_of = {int(j): k for k, c in enumerate(components) for j in c.listings}
    # A listing's unit is the smallest replica its component wants that its nodes hold: the
    # component's smallest replica, when the listing's nodes hold it, else none.
    smallest = [min((problem.requests[i].gpus_per_replica for i in c.requests), default=0) for c in components]
    free_by_listing = free_after(problem, plan)
    base: dict[int, tuple[Problem, Plan, Decimal]] = {}
    budget = max_resolves
    deadline = None if budget_seconds is None else time.perf_counter() + budget_seconds
    out = []
    for j, listing in enumerate(problem.listings):
        free = free_by_listing[listing.id]
        k = component_of.get(j)
        unit = 0 if k is None or smallest[k] > listing.gpus_per_node else smallest[k]
        price = ListingPrice(
            listing.id, listing.region, listing.gpu_model, listing.price_per_gpu_hour, None, sum(free), unit
        )
        if unit == 0 or max(free, default=0) >= unit:
            out.append(replace(price, rent=costs.money(0)))
            continue
        late = deadline is not None and time.perf_counter() > deadline
        if budget <= 0 or late or k is None or len(components[k].requests) > max_component_requests:
            out.append(price)
            continue
        budget -= 1
        if k not in base:
            sub = Problem(
                requests=tuple(problem.requests[i] for i in components[k].requests),
                listings=tuple(problem.listings[x] for x in components[k].listings),
                rtt_ms=problem.rtt_ms,
                now=problem.now,
            )
            sub_plan = solve(sub)
            base[k] = (sub, sub_plan, surplus(sub, sub_plan))
        out.append(replace(price, rent=marginal_rent(*base[k], listing.id, unit)))
    return tuple(out)


def marginal_rent(sub: Problem, sub_plan: Plan, value: Decimal, listing_id: int, unit: int) -> Decimal:
    """The exact finite difference: re-solve ``sub`` with one more ``unit``-GPU node on the listing."""
    more = Problem(
        requests=sub.requests,
        listings=tuple(replace(x, node_free=(*x.node_free, unit)) if x.id == listing_id else x for x in sub.listings),
        rtt_ms=sub.rtt_ms,
        now=sub.now,
    )
    more_plan = solve(more)
    gained = surplus(more, more_plan) - value
    sold = sold_gpu_hours(more, more_plan, listing_id) - sold_gpu_hours(sub, sub_plan, listing_id)
    if sold <= 0 or gained <= 0:
        return costs.money(0)
    return costs.money(gained / sold)


def with_prices(
    problem: Problem,
    plan: Plan,
    *,
    max_resolves: int = MAX_RESOLVES,
    max_component_requests: int = MAX_COMPONENT_REQUESTS,
    budget_seconds: float | None = None,
) -> Plan:
    """``plan`` with its :attr:`~matching.problem.Plan.prices` filled in."""
    prices = clearing_prices(
        problem,
        plan,
        max_resolves=max_resolves,
        max_component_requests=max_component_requests,
        budget_seconds=budget_seconds,
    )
    return replace(plan, prices=prices)


@dataclass(frozen=True)
class RegionPrice:
    """The market's clearing price of one GPU model in one region after a round.

    ``price`` is the lowest clearing price among the region's priced listings (the cheapest way to
    get one more GPU-hour there); ``rent`` the highest rent; ``None`` when no listing was priced.
    """

    region: str
    gpu_model: str
    price: Decimal | None
    rent: Decimal | None
    free_gpus: int
    listings: int
    saturated: int
    unpriced: int


def by_region(prices: tuple[ListingPrice, ...]) -> list[RegionPrice]:
    """Per (region, GPU model) aggregates of listing prices, sorted by model then region."""
    groups: dict[tuple[str, str], list[ListingPrice]] = defaultdict(list)
    for p in prices:
        groups[(p.gpu_model, p.region)].append(p)
    out = []
    for (model, region), group in sorted(groups.items()):
        priced = [p for p in group if p.rent is not None]
        out.append(
            RegionPrice(
                region=region,
                gpu_model=model,
                price=min((p.ask + p.rent for p in priced if p.rent is not None), default=None),
                rent=max((p.rent for p in priced if p.rent is not None), default=None),
                free_gpus=sum(p.free_gpus for p in group),
                listings=len(group),
                saturated=sum(1 for p in group if p.rent is None or p.rent > 0),
                unpriced=len(group) - len(priced),
            )
        )
    return out
