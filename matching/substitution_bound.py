"""Bounds of an inference round that any placement obeys, for the fast method's gap.

- **Tokens/s**: Σ over demands of its *cap* (:func:`servable`): 0 without an option (a feasible
  (alternative, listing) on the capacity before the round), else its target, or less where its
  budget per hour cannot pay enough whole replicas even at the cheapest prices.
- **Cost**, at the tokens/s the plan serves (units of 0.0001 CNY × hours, then CNY), the best of:
  *every demand served its cap* → Σ of each demand's cheapest whole-replica cover of its cap,
  capacity relaxed (each alternative at its cheapest listing, any number of replicas, budget
  dropped), and the same at the Lagrangian's capacity prices (:class:`Lagrangian` by class, then
  :class:`ListingPrices` by listing);
  *otherwise* → serving the plan's total tokens/s at each demand's least **cost per served
  token/s**, up to its cap, at zero or at the Lagrangian's capacity prices; and the covers of the
  caps less the most that serving the shortfall less could save (:func:`savings`), from the lowest
  priority level's demands alone where the plan serves every other demand its cap (a placement as
  good by priority, the optimum among them, serves those their caps too:
  :func:`demands_that_may_fall_short`).
- **Cost per served token/s** of a replica is its cost ÷ min(its tokens/s, the demand's cap):
  a demand never counts more than its cap served, so a replica bigger than the cap is paid
  whole for at most the cap. For any whole replicas of a demand, Σ cost ≥ e × min(cap, Σ
  tokens/s), e being the least such ratio over its alternatives (Σ min(tᵢ, T) ≥ min(T, Σ tᵢ)), so
  pricing served tokens/s at e is a relaxation that keeps most of what whole replicas cost a small
  demand (a 200 tokens/s demand on a 5,000 tokens/s replica pays the whole replica, not 4 % of it).

All drop rules, so all are proven lower bounds; tests check them against the exact program and
their pieces against brute force.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import cast

import numpy as np
from numba import njit
from numpy.typing import NDArray

from matching import cores, costs
from matching.substitution_batch import LazyCandidates
from matching.substitution_matrix import NO_PRICE
from matching.substitution_round import Round
from matching.substitution_select import sort_segments

#: Nodes of the bound's small branch and bound searches before they take a fractional bound instead.
NODE_LIMIT = 20_000


def cheapest_items(rnd: Round, i: int, *, scalar_only: bool = False) -> list[tuple[float, float]]:
    """(cost × hours of one replica, its tokens/s) of each open alternative of demand ``i`` at its
    cheapest listing (capacity ignored), cheapest per token/s first (then cheapest, then alternative
    order); ``scalar_only``: only the alternatives the batch matrices do not hold."""
    if rnd.batch is not None:
        sets = item_sets(rnd, scalar_only=scalar_only)
        lo, hi = sets.at[i], sets.at[i + 1]
        return list(zip(sets.cost[lo:hi].tolist(), sets.tps[lo:hi].tolist(), strict=True))
    alts, hours = rnd.demands[i].alternatives, rnd.demands[i].duration_hours
    items = [
        (float(c.first_cost) * alts[c.alt].gpus_per_replica * hours, alts[c.alt].tokens_per_second_per_replica)
        for c in rnd.options[i]
        if c.count and not (scalar_only and isinstance(c, LazyCandidates))
    ]
    return sorted(items, key=lambda it: (it[0] / it[1], it[0]))


def cheapest_cover(items: list[tuple[float, float]], target: float) -> float:
    """Least cost of whole replicas (any number of each item) making at least ``target`` tokens/s,
    by branch and bound (compiled); on hitting :data:`NODE_LIMIT` nodes the fractional bound of what
    is left is used, so the result is always a lower bound (exact when the search completes). Items
    are (cost, tokens/s) of one replica, cheapest per token/s first. (For many demands at once:
    :meth:`ItemSets.cheapest_cover`.)"""
    return ItemSets.of([items]).cheapest_covers([0], [target])[0]


@njit(cache=True, nogil=True)
def _cheapest_cover(cost: NDArray[np.float64], tps: NDArray[np.float64], target: float) -> float:
    """:func:`cheapest_cover` of the items (``cost``, ``tps``; not empty): depth first, the most
    replicas of each item first, a node cut when it cannot beat the best cover found (the rest at
    the next item's cost per token/s), and past :data:`NODE_LIMIT` nodes the least such bound
    taken instead. Iterative (a recursive compiled function cannot be called from compiled code
    loaded from numba's cache)."""
    n = len(cost)
    missing, spent = np.zeros(n + 1), np.zeros(n + 1)
    nxt = np.zeros(n + 1, dtype=np.int64)  # per depth, the count its next child takes
    missing[0] = target
    best, cut, visited = math.inf, math.inf, 0
    depth, entering = 0, True
    while True:
        if entering:
            visited += 1
            stop = True
            if missing[depth] <= 0:
                best = min(best, spent[depth])
            elif depth < n:
                bound = spent[depth] + missing[depth] * (cost[depth] / tps[depth])
                if bound < best:
                    if visited > NODE_LIMIT:
                        cut = min(cut, bound)
                    else:
                        stop = False
                        nxt[depth] = math.ceil(missing[depth] / tps[depth] - 1e-9)
            if stop:
                if depth == 0:
                    return min(best, cut)
                depth -= 1
                entering = False
                continue
        else:
            nxt[depth] -= 1
        if nxt[depth] < 0:
            if depth == 0:
                return min(best, cut)
            depth -= 1
            continue
        c = nxt[depth]
        missing[depth + 1] = missing[depth] - c * tps[depth]
        spent[depth + 1] = spent[depth] + c * cost[depth]
        depth += 1
        entering = True


@njit(cache=True, nogil=True)
def _cheapest_covers(
    at: NDArray[np.int64],
    cost: NDArray[np.float64],
    tps: NDArray[np.float64],
    which: NDArray[np.int64],
    targets: NDArray[np.float64],
) -> NDArray[np.float64]:
    """:func:`_cheapest_cover` of demand ``which[q]``'s items (``at`` its range) at ``targets[q]``
    for each q (inf without items)."""
    out = np.full(len(which), np.inf)
    for q in range(len(which)):
        lo, hi = at[which[q]], at[which[q] + 1]
        if hi > lo:
            out[q] = _cheapest_cover(cost[lo:hi], tps[lo:hi], targets[q])
    return out


def served_ratio(items: list[tuple[float, float]], target: float) -> float:
    """The least cost per served token/s of ``items`` ((cost, tokens/s) of one replica) for a demand
    of ``target`` tokens/s: cost ÷ min(tokens/s, target) (see the module's docstring)."""
    return float(ItemSets.of([items]).served_ratios(np.array([target], dtype=np.float64))[0])


def most_tokens(items: Sequence[tuple[float, float]], budget: float, target: float, *, below: bool = False) -> float:
    """The most tokens/s, at most ``target`` (``below``: strictly below it), of whole replicas
    ((price or cost, tokens/s) of one replica of each item, any number of each) whose prices sum to
    at most ``budget``; by branch and bound, on hitting :data:`NODE_LIMIT` nodes the fractional
    bound of what is left is used, so the result is always an upper bound (exact when the search
    completes). The items are searched by most tokens/s per cost first, then cheapest, then in
    order; an item that costs nothing gives the target. (For many demands at once:
    :meth:`ItemSets.most_tokens`.)"""
    return ItemSets.of([items]).most_tokens([0], [budget], np.array([target], dtype=np.float64), below)[0]


@njit(cache=True, nogil=True)
def _most_tokens(
    cost: NDArray[np.float64], tps: NDArray[np.float64], budget: float, target: float, below: bool
) -> float:
    """:func:`most_tokens` of the items (``cost`` > 0, ``tps``; by most tokens/s per cost first):
    depth first, the most replicas of each item first, a node cut when it cannot beat the best
    found (the rest at the next item's tokens per cost), and past :data:`NODE_LIMIT` nodes the
    greatest such bound taken instead. Iterative, as :func:`_cheapest_cover`."""
    n = len(cost)
    tokens, left = np.zeros(n + 1), np.zeros(n + 1)
    nxt = np.zeros(n + 1, dtype=np.int64)
    left[0] = budget
    best, cut, visited = 0.0, 0.0, 0
    depth, entering = 0, True
    while True:
        if entering:
            visited += 1
            best = max(best, min(tokens[depth], target))
            stop = True
            if not ((best >= target and not below) or depth == n):
                bound = min(target, tokens[depth] + left[depth] * (tps[depth] / cost[depth]))
                if bound > best:
                    if visited > NODE_LIMIT:
                        cut = max(cut, bound)
                    else:
                        stop = False
                        # (⌈·⌉ with no tolerance: at worst one count too many, which the check
                        # below drops or the cap of the target covers)
                        most = min(int(left[depth] // cost[depth]), math.ceil((target - tokens[depth]) / tps[depth]))
                        nxt[depth] = max(0, most)
            if stop:
                if depth == 0:
                    return float(max(best, cut))
                depth -= 1
                entering = False
                continue
        else:
            nxt[depth] -= 1
        while below and nxt[depth] >= 0 and not tokens[depth] + nxt[depth] * tps[depth] < target:
            nxt[depth] -= 1  # (a count reaching the target is not below it)
        if nxt[depth] < 0:
            if depth == 0:
                return float(max(best, cut))
            depth -= 1
            continue
        c = nxt[depth]
        tokens[depth + 1] = tokens[depth] + c * tps[depth]
        left[depth + 1] = left[depth] - c * cost[depth]
        depth += 1
        entering = True


@njit(cache=True, nogil=True)
def _most_tokens_each(
    at: NDArray[np.int64],
    cost: NDArray[np.float64],
    tps: NDArray[np.float64],
    which: NDArray[np.int64],
    budgets: NDArray[np.float64],
    targets: NDArray[np.float64],
    free: NDArray[np.bool_],
    below: bool,
) -> NDArray[np.float64]:
    """:func:`_most_tokens` of demand ``which[q]``'s items (``at`` its range) within ``budgets[q]``
    up to ``targets[q]`` for each q; its target when ``free`` (an item costs nothing)."""
    out = np.empty(len(which))
    for q in range(len(which)):
        i = which[q]
        if free[i]:
            out[q] = targets[q]
        else:
            out[q] = _most_tokens(cost[at[i] : at[i + 1]], tps[at[i] : at[i + 1]], budgets[q], targets[q], below)
    return out


@njit(cache=True, nogil=True)
def _cheapest_first(
    order: NDArray[np.int64],
    rho: NDArray[np.float64],
    caps: NDArray[np.float64],
    klass: NDArray[np.int64],
    per: NDArray[np.float64],
    served: float,
    usage: NDArray[np.float64],
) -> float:
    """``served`` tokens/s taken from the demands in ``order`` (cheapest ``rho`` per served token/s
    first), each up to its cap, while ``rho`` is finite: their cost, and into ``usage`` the GPUs of
    each class ``klass`` they take (``per`` per token/s; class -1: none)."""
    total, left = 0.0, served
    for i in order:
        if left <= 0 or not np.isfinite(rho[i]):
            break
        take = min(caps[i], left)
        total += take * rho[i]
        if klass[i] >= 0:
            usage[klass[i]] += take * per[i]
        left -= take
    return total


@njit(cache=True, nogil=True)
def _least_class_by_demand(
    flat_m: NDArray[np.float32],
    m_at: NDArray[np.int64],
    m_width: NDArray[np.int64],
    m_off: NDArray[np.int64],
    per: NDArray[np.float32],
    pi: NDArray[np.float32],
    segments: NDArray[np.int64],
    order: NDArray[np.int64],
    v0: NDArray[np.float32],
    by_demand: NDArray[np.int64],
) -> tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.int64]]:
    """Per demand (its pairs ``by_demand[segments[s]:segments[s + 1]]``): the position in
    ``by_demand`` of its pair of least value (min over classes c of (m[c] + pi[off + c]) × per, in
    float32; the first such pair on a tie), that value and its class (offset + c, the first on a
    tie): what each pair's least class, then each demand's first least pair, give. Its pairs are
    visited in ``order`` (positions, by ``v0`` ascending: min over c of m[c] × per, never above
    the value), and the visit stops at the first whose v0 is above the best."""
    n = len(segments) - 1
    out_at = np.empty(n, dtype=np.int64)
    out_val = np.empty(n, dtype=np.float32)
    out_cls = np.empty(n, dtype=np.int64)
    for s in range(n):
        best, at, cls = np.float32(np.inf), -1, -1
        for q in range(segments[s], segments[s + 1]):
            if v0[q] > best:
                break
            pos = order[q]
            p = by_demand[pos]
            base, off = m_at[p], m_off[p]
            least, c_at = np.float32(np.inf), 0
            for c in range(m_width[p]):
                v = (flat_m[base + c] + pi[off + c]) * per[p]
                if v < least:
                    least, c_at = v, c
            if least < best or (least == best and (at < 0 or pos < at)):
                best, at, cls = least, pos, off + c_at
        out_at[s], out_val[s], out_cls[s] = at, best, cls
    return out_at, out_val, out_cls


def warm_up() -> None:
    """Compile (or load from numba's cache) the bound's compiled parts (~2 s to compile)."""
    cheapest_cover([(1.0, 1.0)], 1.0)
    most_tokens([(1.0, 1.0)], 1.0, 1.0)
    most_tokens([(1.0, 1.0)], 1.0, 2.0, below=True)
    bits, zero, ones = np.full((1, 1), 0x80, dtype=np.uint8), np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.int64)
    _least_by_demand(
        bits, zero, np.array([0, 1]), np.zeros(1), zero, zero, ones, zero, np.ones(1), np.ones(1), np.ones(1),
        np.zeros(1), np.full(1, np.inf), np.full(1, -1), np.zeros(1),
    )  # fmt: skip
    _listing_costs(bits, zero, zero, zero, ones, zero, np.ones(1), np.ones(1), np.ones(1), np.zeros(1))
    one = np.zeros(1, dtype=np.int64)
    _cheapest_first(one, np.ones(1), np.ones(1), one, np.ones(1), 1.0, np.zeros(1))
    _least_class_by_demand(
        np.zeros(1, dtype=np.float32), one, np.ones(1, dtype=np.int64), one, np.ones(1, dtype=np.float32),
        np.zeros(1, dtype=np.float32), np.array([0, 1]), one, np.zeros(1, dtype=np.float32), one,
    )  # fmt: skip


class ItemSets:
    """Items of many demands ((cost, tokens/s) of one replica, each demand's in a given order) as
    flat arrays: :func:`cheapest_cover`, :func:`served_ratio` and :func:`most_tokens` of each
    demand's items, the same searches on views of the arrays, without a Python list per demand
    (at 10k demands the lists, not the searches, took most of the bound's time).

    ``d``: each item's demand, ascending (within a demand, the items in their order)."""

    def __init__(self, n: int, d: NDArray[np.int64], cost: NDArray[np.float64], tps: NDArray[np.float64]) -> None:
        self.n, self.d, self.cost, self.tps = n, d, cost, tps
        self.at = np.searchsorted(d, np.arange(n + 1))
        self.ratio = cost / tps

    @classmethod
    def of(cls, lists: Sequence[Sequence[tuple[float, float]]]) -> ItemSets:
        """From one list of items per demand."""
        d = np.repeat(np.arange(len(lists), dtype=np.int64), [len(items) for items in lists])
        cost = np.array([c for items in lists for c, _ in items], dtype=np.float64)
        tps = np.array([t for items in lists for _, t in items], dtype=np.float64)
        return cls(len(lists), d, cost, tps)

    def ranked(self) -> ItemSets:
        """These items, each demand's cheapest per token/s first (then cheapest, then in order)."""
        order = sort_segments(self.at, self.ratio, self.cost)
        return ItemSets(self.n, self.d[order], self.cost[order], self.tps[order])

    def cheapest_covers(self, which: Sequence[int], targets: Sequence[float]) -> list[float]:
        """:func:`cheapest_cover` of demand ``which[q]``'s items (ranked) at ``targets[q]``."""
        got = _cheapest_covers(
            self.at, self.cost, self.tps, np.array(which, dtype=np.int64), np.array(targets, dtype=np.float64)
        )
        return cast(list[float], got.tolist())

    def served_ratios(self, targets: NDArray[np.float64]) -> NDArray[np.float64]:
        """:func:`served_ratio` of each demand's items at its target (inf without items)."""
        out = np.full(self.n, math.inf)
        has = np.flatnonzero(self.at[1:] > self.at[:-1])
        if len(has):
            values = self.cost / np.minimum(self.tps, targets[self.d])
            out[has] = np.minimum.reduceat(values, self.at[has])
        return out

    def most_tokens(
        self, which: Sequence[int], budgets: Sequence[float], targets: NDArray[np.float64], below: bool
    ) -> list[float]:
        """:func:`most_tokens` of demand ``which[n]``'s items within ``budgets[n]`` up to its
        ``targets`` entry (``below``: strictly below it)."""
        keep = np.flatnonzero(self.tps < targets[self.d]) if below else np.arange(len(self.d))
        d, c, t = self.d[keep], self.cost[keep], self.tps[keep]
        free = np.bincount(d[c <= 0], minlength=self.n) > 0  # a demand with a free item gets its target
        with np.errstate(divide="ignore", invalid="ignore"):  # (only in those demands)
            per_cost = t / c
        # Most tokens/s per cost first, then cheapest, then in order (−t / c is −(t / c) exactly).
        at = np.searchsorted(d, np.arange(self.n + 1))
        order = sort_segments(at, -per_cost, c)
        c, t = c[order], t[order]
        mine = np.array(which, dtype=np.int64)
        got = _most_tokens_each(
            at, c, t, mine, np.array(budgets, dtype=np.float64), targets[mine].astype(np.float64), free, below
        )
        return cast(list[float], got.tolist())


def item_sets(rnd: Round, *, scalar_only: bool = False) -> ItemSets:
    """Every demand's :func:`cheapest_items` (cost × hours, tokens/s), ranked, as :class:`ItemSets`."""
    if rnd.batch is None:
        return ItemSets.of([cheapest_items(rnd, i, scalar_only=scalar_only) for i in range(len(rnd.demands))])
    d, cost, tps, scalar = rnd.cheapest_item_arrays()
    if scalar_only:
        d, cost, tps = d[scalar], cost[scalar], tps[scalar]
    return ItemSets(len(rnd.demands), d, cost, tps)


def servable(rnd: Round) -> NDArray[np.float64]:
    """Each demand's most tokens/s in any placement: 0 without an option, else its target or less
    where its budget per hour cannot pay enough whole replicas even at each alternative's cheapest
    price (capacity ignored; :func:`most_tokens`). Cached on the round."""
    if rnd.servable is None:
        # Per hour: a replica's cost at the cheapest listing (price − subsidy) is at most the
        # cheapest price, which is what the budget pays.
        sets = item_sets(rnd)
        hours = np.array([d.duration_hours for d in rnd.demands], dtype=np.int64)
        per_hour = ItemSets(sets.n, sets.d, sets.cost / hours[sets.d], sets.tps)
        targets = np.array([d.tokens_per_second for d in rnd.demands], dtype=np.float64)
        everyone = range(len(rnd.demands))
        caps = np.array(per_hour.most_tokens(everyone, rnd.budget, targets, below=False), dtype=np.float64)
        rnd.servable = caps
    return rnd.servable


def demands_that_may_fall_short(
    rnd: Round, caps: NDArray[np.float64], served: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """The demands that a placement as good as the plan by priority may serve below their caps
    (``served``: what the plan serves each).

    Where the plan serves every demand of every priority level but the lowest its cap, a placement
    as good (as much at each level from the highest, until one serves more) serves those demands
    their caps too (no placement serves a demand more), and its lowest level at least what the
    plan's does: only the lowest level's demands can fall short, by at most the plan's shortfall.
    The optimum is such a placement, so the covers' bound may take savings from those alone.
    Otherwise every demand may."""
    priority = np.array([d.priority for d in rnd.demands], dtype=np.int64)
    lowest: NDArray[np.bool_] = priority == (priority.min() if len(priority) else 0)
    if np.all(served[~lowest] >= caps[~lowest] - 1e-6):
        return lowest
    return np.ones(len(priority), dtype=np.bool_)


def bounds(
    rnd: Round,
    upper_units: float,
    lagrangian: Lagrangian | None = None,
    start: NDArray[np.float64] | None = None,
    by_listing: tuple[ListingPrices, NDArray[np.float64]] | None = None,
) -> tuple[float, Decimal, dict[str, int | str | float]]:
    """(tokens/s upper bound, cost lower bound in CNY, what kind of bound). ``upper_units``: the
    plan's cost (units × hours), the target of the subgradient steps; ``lagrangian``: the round's,
    when already built; ``start``: capacity prices already found for the round (the shadow
    passes'), from which a few steps go on (:data:`WARM_STEPS`) instead of :data:`LAGRANGE_STEPS`
    from zero. Then :data:`LISTING_STEPS` steps of a price per listing (:class:`ListingPrices`)
    from the class prices (``by_listing``: the round's, with prices already found, from which
    :data:`LISTING_WARM_STEPS` go on), and the whole-replica covers at multiples of those
    (:data:`COVER_PRICE_SCALES`).

    A demand is served at most its :func:`servable` tokens/s in any placement, so every rule below
    holds with its target replaced by that cap."""
    caps = servable(rnd)
    open_demands = [i for i in range(len(rnd.demands)) if caps[i] > 0]
    tokens_ub = float(sum(caps[i] for i in open_demands))
    served_each = [rnd.served(i) for i in range(len(rnd.demands))]
    served = sum(served_each)
    everyone = served >= tokens_ub - 1e-6
    shortfall = 0.0 if everyone else tokens_ub - served
    candidates: dict[str, float] = {}
    sets = item_sets(rnd)
    may_fall_short = None  # (without a shortfall, no demand falls short)
    if everyone:
        candidates["whole-replica covers, capacity relaxed"] = sum(
            sets.cheapest_covers(open_demands, [caps[i] for i in open_demands])
        )
    else:
        ratios = sets.served_ratios(caps).tolist()
        offers = sorted((ratios[i], caps[i]) for i in open_demands)
        units, left = 0.0, served
        for ratio, tokens in offers:
            take = min(tokens, left)
            units += take * ratio
            left -= take
            if left <= 0:
                break
        candidates["per served token/s, capacity relaxed"] = units
        # Whatever serves ≥ `served` in all serves each demand at least its cap less the shortfall
        # (the others cannot make up more than their own caps), and those that cannot fall short
        # their caps: each such share costs at least its cheapest whole-replica cover.
        may_fall_short = demands_that_may_fall_short(rnd, caps, np.array(served_each))
        short = [i for i in open_demands if not may_fall_short[i] or caps[i] > shortfall]
        # (Less a hair: the shortfall is a difference of two sums over every demand, so where one
        # demand alone falls short, its cap − shortfall may come out a rounding above what its own
        # replicas serve, and no cover within its budget reaches that: an infinite "bound".)
        targets = [caps[i] - shortfall - TOKENS_SLACK if may_fall_short[i] else caps[i] for i in short]
        candidates["whole-replica covers of cap − shortfall"] = sum(sets.cheapest_covers(short, targets))
    steps = 0
    if rnd.batch is not None and rnd.batch.model_pairs:
        lagrangian = lagrangian or Lagrangian(rnd)
        steps = LAGRANGE_STEPS if start is None else WARM_STEPS
        value, pi = lagrangian.best(served, upper_units, start, steps)
        # The matrices are float32: a margin far above their rounding keeps these bounds bounds.
        candidates["Lagrangian, capacity priced by class"] = value * (1 - FLOAT32_MARGIN)
        # On from the class prices, a price per listing (its value there is the classes').
        if by_listing is None:
            listings, listing_steps = ListingPrices(lagrangian), LISTING_STEPS
            listing_pi = listings.expand(pi)
        else:
            (listings, listing_pi), listing_steps = by_listing, LISTING_WARM_STEPS
        value, pi = listings.best(served, value * LISTING_TARGET, listing_pi, listing_steps)
        # (float64, but summed over many demands: the same margin keeps rounding out of the bound.)
        candidates["Lagrangian, capacity priced by listing"] = value * (1 - FLOAT32_MARGIN)
        name = "Lagrangian by listing with whole-replica covers" + (
            "" if everyone else ", less what the shortfall can save"
        )
        # Whole replicas make capacity scarcer than the split replicas π was raised for, so the
        # covers' bound usually peaks at a multiple of π; every multiple gives a bound.
        # (Along the ray the bound rises to a peak and falls: the multiples are tried in turn until
        # one gives less than the one before.)
        scale, best = COVER_PRICE_SCALES[0], -math.inf
        for k in COVER_PRICE_SCALES:
            got = listings.covers(pi * k, shortfall, may_fall_short)
            if got <= best:
                break
            scale, best = k, got
        candidates[name] = best * (1 - FLOAT32_MARGIN)
    # (Every candidate is a lower bound on a cost the plan itself shows finite: one that is not
    # finite is not a bound, and is left out rather than taken as the largest.)
    finite = [(k, v) for k, v in candidates.items() if math.isfinite(v)]
    kind, units = max(finite, key=lambda kv: kv[1], default=("none", 0.0))
    lower = costs.from_units(max(0, math.floor(units - 1e-6)))
    info: dict[str, int | str | float] = {"bound": kind, "lagrange_steps": steps}
    if "Lagrangian, capacity priced by listing" in candidates:
        info["listing_steps"] = listing_steps
    if kind.startswith("Lagrangian by listing with whole-replica covers"):
        info["cover_price_scale"] = scale
    return tokens_ub, lower, info


#: Tokens/s taken off a cover's target in the bound where it is a difference of sums over many
#: demands (their rounding is ~1e-9 tokens/s at 10k demands): the bound stays a bound, a hair lower.
TOKENS_SLACK = 1e-6
#: Subgradient steps of the Lagrangian bound (a fixed count, not a time budget: the bound, like the
#: plan, is a function of the round's inputs).
LAGRANGE_STEPS = 20
#: Subgradient steps of the class prices from those already found for the round (the shadow
#: passes'): 1 only values them (5 or 1,000 gave the same bound at 10k × 2k; the steps by listing
#: after them do more for the time).
WARM_STEPS = 1
#: Subgradient steps of the price per listing (:class:`ListingPrices`), from the class prices, and
#: their Polyak target: the class bound × this (the plan's cost, a target ~40 % above the bound at
#: 10k × 2k, makes steps too long: 20 steps towards it raise the covers' bound by half as much).
#: ~9 ms a step at 10k × 2k. Measured on the benchmark's rounds (seeds 7 and 8; the plans follow
#: these prices through the first shadow pass): against ×1.07, ×1.1 gives lower gaps at 1k × 500
#: and 10k × 2k on both seeds (10k × 2k: 18.6 % and 28.9 % against 19.7 % and 31.2 %) and a
#: 0.4 % higher one at 300 × 150; ×1.05, ×1.15, ×1.2, or 30 or 40 steps, none better on both.
LISTING_STEPS = 20
LISTING_TARGET = 1.1
#: Steps of the price per listing from those already found for the round (the shadow passes').
LISTING_WARM_STEPS = 5
#: The multiples of the listings' capacity prices at which the whole-replica covers' bound is
#: taken, in turn until one gives less than the one before (the best is kept). Measured on the
#: benchmark rounds (seed 7), the bound peaks near ×1 at 100 × 50, ×1.5 at 300 × 150 and ×2 at
#: 1k × 500 and 10k × 2k; each multiple costs one cover search per demand (~60 ms at 10k × 2k).
COVER_PRICE_SCALES = (2.0, 1.5, 1.0)
#: Relative margin taken off the float32 Lagrangian values (their rounding is ~1e-7 relative).
FLOAT32_MARGIN = 1e-5


class Lagrangian:
    """A Lagrangian relaxation of the listings' capacity, by *class* (a GPU model's listings in one
    region): prices π_C ≥ 0 per GPU of each class. For any π, every demand alone takes its cheapest
    way per *served* token/s (the module's docstring) at (cheapest feasible price in the class ×
    hours + π_C) per GPU (capacity, packing, budgets and the target rule dropped; a voucher's
    percent taken off every price, which is never above its real subsidy), up to its cap
    (:func:`servable`), the cheapest total of the served tokens/s is taken across demands, and Σ π_C
    × the class's free GPUs is subtracted: a lower bound on the cost of any placement serving as
    much (weak duality), whatever π is. Subgradient steps raise it."""

    def __init__(self, rnd: Round) -> None:
        batch = rnd.batch
        if batch is None:
            raise ValueError("the Lagrangian bound needs the batch matrices (Round(batch=True))")
        self.rnd = rnd
        self.parts = []  # (demand per pair, g/t per pair, cost matrix per GPU incl. hours, class offset)
        #: Each listing's class (index into π), -1 for listings in no class.
        self.class_of = np.full(len(rnd.problem.listings), -1, dtype=np.int64)
        free, offset = [], 0
        n = len(rnd.demands)
        demand_hours = np.array([d.duration_hours for d in rnd.demands], dtype=float)
        demand_disc = np.array([1 - _percent(rnd, i) / 100 for i in range(n)], dtype=float)
        # Every part's matrix is a view of one flat array (:meth:`evaluate` reads them all at once).
        models = [(model, g) for model, g in batch.model_pairs.items() if len(g)]
        self.flat_m = np.empty(sum(batch.class_min[model].size for model, _ in models), dtype=np.float32)
        at, m_at, m_width, m_off = 0, [], [], []
        for model, g in models:
            shape = batch.class_min[model].shape
            m: NDArray[np.float32] = self.flat_m[at : at + shape[0] * shape[1]].reshape(shape[0], shape[1])
            m_at.append(at + np.arange(len(g), dtype=np.int64) * shape[1])
            m_width.append(np.full(len(g), shape[1], dtype=np.int64))
            m_off.append(np.full(len(g), offset, dtype=np.int64))
            at += m.size
            m[:] = batch.class_min[model]
            m[m >= NO_PRICE] = np.inf
            d, size, tps = batch.pair_demand[g], batch.pair_gpus[g].astype(float), batch.pair_tokens[g]
            m *= (demand_hours[d] * demand_disc[d]).astype(np.float32)[:, None]
            self.parts.append((d, size, tps, m, offset))
            self.class_of[batch.cols[model]] = offset + batch.col_class[model]
            free.append(batch.class_free[model])
            offset += m.shape[1]
        self.free = np.concatenate(free) if free else np.zeros(0)
        # Every pair of the parts, in part order: its number in the batch's pair columns, its demand,
        # its demand's hours × (1 − voucher percent), and where its row of the flat matrix starts,
        # how wide it is and its classes' offset into π.
        none = np.zeros(0, dtype=np.int64)
        self.pairs = np.concatenate([g for _, g in models]) if models else none
        self.pair_demand = pair_demand = batch.pair_demand[self.pairs]
        self.hd = demand_hours[pair_demand] * demand_disc[pair_demand]
        self.m_at, self.m_width, self.m_off = (np.concatenate(a) if a else none for a in (m_at, m_width, m_off))
        # The pairs of all parts by demand (stable), and where each demand's pairs start there.
        self.by_demand = np.argsort(pair_demand, kind="stable")
        self.demand_starts = np.flatnonzero(np.diff(pair_demand[self.by_demand], prepend=-1))
        self.caps = servable(rnd)
        # Alternatives outside the matrices (measured listings, restricted vouchers) at π = 0: below
        # their true price at any π, so the bound stays a bound.
        self.scalar = item_sets(rnd, scalar_only=True)
        self.rho0 = self.scalar.served_ratios(self.caps)
        # GPUs per served token/s of each pair (the caps are the round's: fixed from here), per
        # part and, for :meth:`evaluate`'s per-demand step, over all parts by demand.
        per = [size / np.minimum(tps, np.maximum(self.caps[d], 1e-9)) for d, size, tps, _, _ in self.parts]
        self.per32 = [p.astype(np.float32) for p in per]
        self.by_demand_pair = pair_demand[self.by_demand]
        self.by_demand_per = np.concatenate(per)[self.by_demand] if per else np.zeros(0)
        # For :meth:`evaluate`: each demand's pairs by their least value at π = 0 (a bound on their
        # value at any π ≥ 0: a demand's visit stops past its best).
        self.per_all32 = np.concatenate(self.per32) if self.parts else np.zeros(0, np.float32)
        v0 = (
            (np.concatenate([m.min(axis=1) for *_, m, _ in self.parts]) * self.per_all32)[self.by_demand]
            if self.parts
            else np.zeros(0, np.float32)
        )
        self.segments = np.append(self.demand_starts, len(self.by_demand)).astype(np.int64)
        self.v0_order = sort_segments(self.segments, v0.astype(np.float64), np.zeros(len(v0)))
        self.v0 = v0[self.v0_order]
        # :meth:`covers_at`' items: each part's pairs with a feasible listing (which π does not
        # change), then the scalar items, in demand order (stable); only their costs depend on π.
        self.cover_rows = [np.flatnonzero(batch.pair_first_col[g] >= 0) for _, g in models]
        d_all = np.concatenate([d[r] for (d, *_), r in zip(self.parts, self.cover_rows, strict=True)] + [self.scalar.d])
        self.cover_order = np.argsort(d_all, kind="stable")
        self.cover_d = d_all[self.cover_order]
        tps_all = [t[r] for (_, _, t, _, _), r in zip(self.parts, self.cover_rows, strict=True)] + [self.scalar.tps]
        self.cover_tps = np.concatenate(tps_all)[self.cover_order]

    def evaluate(self, pi: NDArray[np.float64], served: float) -> tuple[float, NDArray[np.float64]]:
        """(L(π), GPUs each class would give) at the best split of ``served`` tokens/s across demands."""
        n = len(self.rnd.demands)
        usage = np.zeros(len(self.free))
        rho = self.rho0.copy()
        klass, per = np.full(n, -1, dtype=np.int64), np.zeros(n)
        if self.parts:
            # Each demand's least value, the first of its pairs (in part order) on a tie.
            pi32, segments = pi.astype(np.float32), self.segments
            parts = cores.split(len(segments) - 1, lambda lo, hi: _least_class_by_demand(
                self.flat_m, self.m_at, self.m_width, self.m_off, self.per_all32, pi32, segments[lo : hi + 1],
                self.v0_order, self.v0, self.by_demand,
            ))  # fmt: skip
            first, val32, c = (np.concatenate(column) for column in zip(*parts, strict=True))
            d, g = self.by_demand_pair[first], self.by_demand_per[first]
            val = val32.astype(float)
            better = val < rho[d]
            rho[d[better]] = val[better]
            klass[d[better]], per[d[better]] = c[better], g[better]
        total = _cheapest_first(np.argsort(rho, kind="stable"), rho, self.caps, klass, per, float(served), usage)
        return total - float(pi @ self.free), usage

    def best(
        self, served: float, upper: float, start: NDArray[np.float64] | None = None, steps: int = LAGRANGE_STEPS
    ) -> tuple[float, NDArray[np.float64]]:
        """The highest L(π) found by ``steps`` subgradient steps from ``start`` (None: π = 0), Polyak
        steps towards ``upper``, and that π."""
        return _subgradient(self.evaluate, self.free, served, upper, start, steps)

    def listing_prices(self, pi: NDArray[np.float64]) -> NDArray[np.float64]:
        """π per GPU of every listing's class (0 for a listing in no class)."""
        return np.where(self.class_of >= 0, np.append(pi, 0.0)[self.class_of], 0.0)

    def covers_at(
        self,
        pair_cost: NDArray[np.float64],
        priced: float,
        shortfall: float,
        may_fall_short: NDArray[np.bool_] | None = None,
    ) -> float:
        """L(π) with whole-replica covers, from each cover pair's cost of one replica at π (the
        parts' pairs with a feasible listing, in part order) and Σ π × free GPUs (``priced``),
        whatever π prices (classes or listings): each open demand's cheapest cover of its cap, less
        the most a placement serving ``shortfall`` tokens/s less than Σ caps could save
        (:func:`savings`), by serving less to the demands of ``may_fall_short`` (None: any; see
        :func:`demands_that_may_fall_short`)."""
        # The pairs, then the scalar items; by demand, then ranked.
        cost = np.concatenate([pair_cost, self.scalar.cost])
        sets = ItemSets(self.scalar.n, self.cover_d, cost[self.cover_order], self.cover_tps).ranked()
        which = np.flatnonzero(self.caps > 0)
        wholes = _cheapest_covers(sets.at, sets.cost, sets.tps, which, self.caps[which])
        total = float(wholes.sum())
        if shortfall <= 0:
            return total - priced
        finite = np.isfinite(wholes)
        if may_fall_short is not None:
            finite &= may_fall_short[which]
        ones, whole = which[finite], wholes[finite]
        ratios = sets.served_ratios(self.caps)
        below = np.array(sets.most_tokens(ones.tolist(), whole.tolist(), self.caps, below=True), dtype=np.float64)
        cap = self.caps[ones]
        return total - _savings(whole, ratios[ones], cap - below, cap, shortfall) - priced


def _subgradient(
    evaluate: Callable[[NDArray[np.float64], float], tuple[float, NDArray[np.float64]]],
    free: NDArray[np.float64],
    served: float,
    upper: float,
    start: NDArray[np.float64] | None,
    steps: int,
) -> tuple[float, NDArray[np.float64]]:
    """The highest ``evaluate(π, served)`` (a value and the GPUs each priced unit would give) found
    by ``steps`` subgradient steps from ``start`` (None: π = 0), Polyak steps towards ``upper``
    halved whenever a step finds no better value, and that π."""
    pi = np.zeros(len(free)) if start is None else start.copy()
    best_value, best_pi = -math.inf, pi
    theta = 1.0
    for _ in range(steps):
        value, usage = evaluate(pi, served)
        if value > best_value:
            best_value, best_pi = value, pi.copy()
        else:
            theta /= 2
        grad = usage - free
        norm = float(grad @ grad)
        if norm == 0 or upper <= value:
            break
        pi = np.maximum(0.0, pi + theta * (upper - value) / norm * grad)
    return best_value, best_pi


class ListingPrices:
    """The :class:`Lagrangian` with a price π_l ≥ 0 per GPU of each *listing* instead of each class:
    every pair pays, per GPU, its least (price × hours × (1 − voucher percent) + π_l) over the
    listings its rules allow (the batch's bit matrix). A class's price puts every listing of a
    region at the price of its cheapest one; here the dearer listings a busy class fills up cost
    what they cost. At π_l = the class's π for each listing it is the class relaxation, so steps
    from there (:meth:`best`) only add to it. Still a relaxation of the capacity of each listing:
    a lower bound for any π ≥ 0.

    A pair's listings are in price order (the matrix's columns), so its scan stops at its first
    unpriced listing: no later one is cheaper. A demand's pairs are visited cheapest at π = 0
    first, and stop once that alone is no better than the best found (π only adds)."""

    def __init__(self, lagrangian: Lagrangian) -> None:
        rnd, batch = lagrangian.rnd, lagrangian.rnd.batch
        if batch is None:
            raise ValueError("the bound by listing needs the batch matrices (Round(batch=True))")
        self.lagrangian, self.bits = lagrangian, batch.bits
        # Per priced unit (a listing of a batch model, the models in the Lagrangian's part order):
        # its listing, price (units) and free GPUs; each model's first unit.
        models = [model for model, g in batch.model_pairs.items() if len(g)]
        self.listings = np.concatenate([batch.cols[m] for m in models]) if models else np.zeros(0, dtype=np.int64)
        self.price = rnd.index.price[self.listings].astype(np.float64)
        self.free = np.concatenate([batch.col_free[m] for m in models]) if models else np.zeros(0)
        first_unit = np.zeros(len(batch.n_cols), dtype=np.int64)
        first_unit[[batch.model_ix[m] for m in models]] = np.cumsum([0] + [len(batch.cols[m]) for m in models[:-1]])
        # Per pair, in the Lagrangian's part order: its matrix row, columns, offset into the units,
        # first feasible column (-1: none), hours × (1 − percent), GPUs per served token/s, GPUs.
        pairs, pair_demand = lagrangian.pairs, lagrangian.pair_demand
        model = batch.pair_model[pairs]
        self.row, self.n_cols, self.off = batch.pair_row[pairs], batch.n_cols[model], first_unit[model]
        self.first, self.hd = batch.pair_first_col[pairs], lagrangian.hd
        self.per = lagrangian.per_all32.astype(np.float64)
        self.size = batch.pair_gpus[pairs].astype(np.float64)
        # The cover pairs (:meth:`Lagrangian.covers_at`'s order): those with a feasible listing.
        self.cover_pairs = np.flatnonzero(self.first >= 0)
        # Each demand's feasible pairs, by their value at π = 0 (at their first feasible listing).
        feasible = lagrangian.by_demand[self.first[lagrangian.by_demand] >= 0]
        v0 = self.price[self.off[feasible] + self.first[feasible]] * self.hd[feasible] * self.per[feasible]
        self.at = np.searchsorted(pair_demand[feasible], np.arange(len(rnd.demands) + 1))
        order = sort_segments(self.at, v0, np.zeros(len(v0)))
        self.by_demand, self.v0 = feasible[order], v0[order]

    def listing_prices(self, pi: NDArray[np.float64]) -> NDArray[np.float64]:
        """π per GPU of every listing of the round (0 for a listing of no batch model)."""
        out = np.zeros(len(self.lagrangian.class_of))
        out[self.listings] = pi
        return out

    def expand(self, class_pi: NDArray[np.float64]) -> NDArray[np.float64]:
        """Each listing at its class's price (:class:`Lagrangian`'s π)."""
        return cast(NDArray[np.float64], np.append(class_pi, 0.0)[self.lagrangian.class_of[self.listings]])

    def evaluate(self, pi: NDArray[np.float64], served: float) -> tuple[float, NDArray[np.float64]]:
        """(L(π), GPUs each listing would give) at the best split of ``served`` tokens/s."""
        lag = self.lagrangian
        rho = lag.rho0.copy()
        klass = np.full(len(rho), -1, dtype=np.int64)
        per = np.zeros(len(rho))
        at = self.at
        cores.split(len(at) - 1, lambda lo, hi: _least_by_demand(
            self.bits, self.by_demand, at[lo : hi + 1], self.v0, self.row, self.first, self.n_cols, self.off,
            self.hd, self.per, self.price, pi, rho[lo:hi], klass[lo:hi], per[lo:hi],
        ))  # fmt: skip
        usage = np.zeros(len(self.free))
        total = _cheapest_first(np.argsort(rho, kind="stable"), rho, lag.caps, klass, per, float(served), usage)
        return total - float(pi @ self.free), usage

    def best(
        self, served: float, upper: float, start: NDArray[np.float64], steps: int
    ) -> tuple[float, NDArray[np.float64]]:
        """:meth:`Lagrangian.best` with a price per listing."""
        return _subgradient(self.evaluate, self.free, served, upper, start, steps)

    def covers(
        self, pi: NDArray[np.float64], shortfall: float = 0.0, may_fall_short: NDArray[np.bool_] | None = None
    ) -> float:
        """:meth:`Lagrangian.covers_at` at a price per listing ``pi``."""
        pairs = self.cover_pairs
        cost = np.concatenate(cores.split(len(pairs), lambda lo, hi: _listing_costs(
            self.bits, pairs[lo:hi], self.row, self.first, self.n_cols, self.off, self.hd, self.size, self.price, pi,
        )))  # fmt: skip
        return self.lagrangian.covers_at(cost, float(pi @ self.free), shortfall, may_fall_short)


@njit(cache=True, nogil=True)
def _least_listing(
    bits: NDArray[np.uint8],
    row: int,
    first: int,
    n_cols: int,
    price: NDArray[np.float64],
    pi: NDArray[np.float64],
    off: int,
    hd: float,
    cutoff: float,
) -> tuple[float, int]:
    """The least price × ``hd`` + π over a matrix row's set columns from ``first`` (prices from
    ``off``), and its column, if below ``cutoff`` (else (inf, -1) or a value ≥ it). Columns are by
    price and π ≥ 0, so the scan stops at the first unpriced set column, and at the first column
    whose price × ``hd`` alone reaches the best so far or the cutoff."""
    best, at = np.inf, -1
    for col in range(first, n_cols):
        base = price[off + col] * hd
        if base >= best or base >= cutoff:
            break
        if (bits[row, col >> 3] >> (7 - (col & 7))) & 1:
            v = base + pi[off + col]
            if v < best:
                best, at = v, col
            if pi[off + col] == 0.0:
                break
    return best, at


@njit(cache=True, nogil=True)
def _least_by_demand(
    bits: NDArray[np.uint8],
    order: NDArray[np.int64],
    at: NDArray[np.int64],
    v0: NDArray[np.float64],
    row: NDArray[np.int64],
    first: NDArray[np.int64],
    n_cols: NDArray[np.int64],
    off: NDArray[np.int64],
    hd: NDArray[np.float64],
    per: NDArray[np.float64],
    price: NDArray[np.float64],
    pi: NDArray[np.float64],
    rho: NDArray[np.float64],
    klass: NDArray[np.int64],
    gpus: NDArray[np.float64],
) -> None:
    """Per demand d (its pairs ``order[at[d]:at[d + 1]]``, by ``v0`` — their value at π = 0 —
    ascending): where one of its pairs' least (price × hd + π) × per beats ``rho[d]``, the least of
    them into ``rho[d]``, its unit (offset + column) into ``klass[d]`` and its per into ``gpus[d]``.
    A pair is worth at least its v0, so the visit stops at the first no better than the best."""
    for d in range(len(at) - 1):
        best, unit, g = rho[d], -1, 0.0
        for q in range(at[d], at[d + 1]):
            if v0[q] >= best:
                break
            p = order[q]
            v, col = _least_listing(bits, row[p], first[p], n_cols[p], price, pi, off[p], hd[p], best / per[p])
            v *= per[p]
            if v < best:
                best, unit, g = v, off[p] + col, per[p]
        if unit >= 0:
            rho[d], klass[d], gpus[d] = best, unit, g


@njit(cache=True, nogil=True)
def _listing_costs(
    bits: NDArray[np.uint8],
    pairs: NDArray[np.int64],
    row: NDArray[np.int64],
    first: NDArray[np.int64],
    n_cols: NDArray[np.int64],
    off: NDArray[np.int64],
    hd: NDArray[np.float64],
    size: NDArray[np.float64],
    price: NDArray[np.float64],
    pi: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Per pair of ``pairs``: one replica's least cost (price × hd + π) × GPUs over its listings."""
    out = np.empty(len(pairs))
    for q in range(len(pairs)):
        p = pairs[q]
        v, _ = _least_listing(bits, row[p], first[p], n_cols[p], price, pi, off[p], hd[p], np.inf)
        out[q] = v * size[p]
    return out


def savings(cut: list[tuple[float, float, float, float]], shortfall: float) -> float:
    """The most a placement can save, against every demand served its cap at its cheapest whole
    cover C, by serving ``shortfall`` tokens/s less in all. ``cut``: per demand (C, e, δ, cap), e its
    least cost per served token/s (so serving s costs at least e × s) and δ the least shortfall that
    lets a cheaper cover do (no cover cheaper than C comes within δ of the cap: :func:`most_tokens`
    below the cap).
    Serving x less saves nothing below δ and at most C − e × (cap − x) from δ on; the concave
    function through (0, 0), (δ, C − e(cap − δ)) and (cap, C) lies above both, and the most of a sum
    of concave functions over shortfalls summing to ``shortfall`` is taken greedily, steepest first."""
    whole, e, delta, cap = (np.array([c[k] for c in cut], dtype=np.float64) for k in range(4))
    return _savings(whole, e, delta, cap, shortfall)


def _savings(
    whole: NDArray[np.float64],
    e: NDArray[np.float64],
    delta: NDArray[np.float64],
    cap: NDArray[np.float64],
    shortfall: float,
) -> float:
    """:func:`savings` of the demands' columns (C, e, δ, cap)."""
    at_delta = np.maximum(0.0, whole - e * (cap - delta))
    steep = delta > 0
    # Each demand's pieces: (slope, length) up to δ (where δ ≤ 0, its saving at δ is had at once),
    # then e up to its cap.
    slope = np.concatenate([at_delta[steep] / delta[steep], e])
    length = np.concatenate([delta[steep], cap - delta])
    order = np.argsort(-slope, kind="stable")
    slope, length = slope[order], length[order]
    before = np.cumsum(length) - length
    take = np.clip(shortfall - before, 0.0, length)
    used = take > 0
    return float(at_delta[~steep].sum() + (slope[used] * take[used]).sum())


def _percent(rnd: Round, i: int) -> float:
    voucher = rnd.demands[i].voucher
    return 0.0 if voucher is None else float(voucher.percent)
