"""Bounds of an inference round that any placement obeys, for the fast method's gap.

- **Tokens/s**: Σ targets of the demands that have an option at all (an option is a feasible
  (alternative, listing) on the capacity before the round).
- **Cost**, at the tokens/s the plan serves (units of 0.0001 CNY × hours, then CNY):
  *every demand with an option fully served* → Σ over demands of its cheapest whole-replica cover
  of its target with the listings' capacity dropped (a Lagrangian relaxation of the capacity rows at
  zero prices: each alternative at its cheapest listing, any number of replicas, budget dropped);
  *otherwise* → serving the plan's total tokens/s at the cheapest cost per token/s each demand has,
  fractionally, up to its target (capacity, whole replicas and budgets dropped). Both drop rules,
  so both are proven lower bounds; the first keeps whole replicas, which is where most of a small
  demand's cost above its fractional share comes from.
"""

from __future__ import annotations

import math
from decimal import Decimal

from matching import costs
from matching.substitution_round import Round


def cheapest_items(rnd: Round, i: int) -> list[tuple[float, float]]:
    """(cost × hours of one replica, its tokens/s) of each open alternative of demand ``i`` at its
    cheapest listing (capacity ignored), cheapest per token/s first."""
    alts, hours = rnd.demands[i].alternatives, rnd.demands[i].duration_hours
    items = [
        (float(c.cost[0]) * alts[c.alt].gpus_per_replica * hours, alts[c.alt].tokens_per_second_per_replica)
        for c in rnd.options[i]
        if len(c.listings)
    ]
    return sorted(items, key=lambda it: (it[0] / it[1], it[0]))


def cheapest_cover(items: list[tuple[float, float]], target: float, node_limit: int = 20_000) -> float:
    """Least cost of whole replicas (any number of each item) making at least ``target`` tokens/s,
    by branch and bound; on hitting ``node_limit`` the fractional bound of what is left is used, so
    the result is always a lower bound (exact when the search completes)."""
    if not items:
        return math.inf
    best = [math.inf]
    nodes = [0]
    n = len(items)
    ratio = [c / t for c, t in items]
    cut = [math.inf]

    def visit(idx: int, missing: float, cost: float) -> None:
        nodes[0] += 1
        if missing <= 0:
            best[0] = min(best[0], cost)
            return
        if idx == n:
            return
        bound = cost + missing * ratio[idx]
        if bound >= best[0]:
            return
        if nodes[0] > node_limit:
            cut[0] = min(cut[0], bound)
            return
        c, t = items[idx]
        most = math.ceil(missing / t - 1e-9)
        for count in range(most, -1, -1):
            visit(idx + 1, missing - count * t, cost + count * c)

    visit(0, target, 0.0)
    return min(best[0], cut[0])


def bounds(rnd: Round) -> tuple[float, Decimal, dict[str, int | str | float]]:
    """(tokens/s upper bound, cost lower bound in CNY, what kind of bound)."""
    open_demands = [i for i in range(len(rnd.demands)) if any(len(c.listings) for c in rnd.options[i])]
    tokens_ub = sum(rnd.demands[i].tokens_per_second for i in open_demands)
    served = sum(min(rnd.placed[i], rnd.demands[i].tokens_per_second) for i in range(len(rnd.demands)))
    if served >= tokens_ub - 1e-9:
        units = sum(cheapest_cover(cheapest_items(rnd, i), rnd.demands[i].tokens_per_second) for i in open_demands)
        kind = "whole-replica covers, capacity relaxed"
    else:
        offers = sorted(
            (items[0][0] / items[0][1], rnd.demands[i].tokens_per_second)
            for i in open_demands
            if (items := cheapest_items(rnd, i))
        )
        units, left = 0.0, served
        for ratio, tokens in offers:
            take = min(tokens, left)
            units += take * ratio
            left -= take
            if left <= 0:
                break
        kind = "fractional, capacity relaxed"
    lower = costs.from_units(max(0, math.floor(units - 1e-6))) if math.isfinite(units) else Decimal(0)
    return tokens_ub, lower, {"bound": kind}
