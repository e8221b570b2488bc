"""The ``engine`` policy of :mod:`matching.substitution`: most tokens/s by priority, then least cost.

- **Exact** on rounds of at most :data:`EXACT_OPTIONS` (demand, alternative, listing) options: the
  integer program of :mod:`matching.substitution_milp` (HiGHS), bound = its proven optimum.
- **Fast** elsewhere: demands by priority, least flexible first (fewest options), each placing the
  cheapest whole-replica *cover* of its target on what is left (a branch and bound over its
  options, :func:`cover`), then a top-up pass (cheapest per served token); then the same again
  with each listing's cost raised by its capacity price (from the Lagrangian bound, by listing
  or by class, at each scale of :data:`SHADOW_PASSES`), repaired where a demand lost tokens/s, each plan kept only
  if better (:func:`_shadow_pass`); then the costliest demands covered again one by one, each
  move kept only if better (:func:`recover_costliest`). Its bounds (:mod:`matching.substitution_bound`): tokens/s ≤
  Σ of each demand's cap; cost ≥ the best of whole-replica covers and Lagrangian relaxations of
  the listings' capacity, recorded with the gap on every run.
"""

from __future__ import annotations

import bisect
import math
import time
from typing import cast

import numpy as np
from numpy.typing import NDArray

from matching import costs
from matching import substitution_select as select
from matching.substitution_batch import AnyCandidates, Batch
from matching.substitution_bound import LISTING_STEPS, LISTING_TARGET, Lagrangian, ListingPrices, bounds
from matching.substitution_milp import solve_milp
from matching.substitution_round import Round, Stats
from matching.timings import ms_since

#: Rounds with at most this many options are solved exactly (HiGHS MILP; ~0.1–1 s at this size).
EXACT_OPTIONS = 4000
#: Options of one alternative a cover considers: the cheapest listings with room, until they could
#: carry the whole target alone, at most this many.
COVER_LISTINGS = 6
#: Alternatives a cover considers: those cheapest per token/s at their cheapest listing before the round.
#: Measured on the benchmark's rounds (seed 7) against 16: 24 is cheaper at every scale (100 × 50
#: 0.5 %, 300 × 150 1.0 %, 1k × 500 1.0 %, 10k × 2k 1.9 %) for ~15 % more time at 10k × 2k; 32 is
#: cheaper still at 300 × 150 and above but 1.5 % dearer at 100 × 50.
COVER_ALTERNATIVES = 24
#: The shadow passes, each at the Lagrangian's capacity prices (``listing``: a price per listing,
#: :class:`~matching.substitution_bound.ListingPrices`; ``class``: per GPU model and region) times
#: a scale, each kept only if better than the plan before it. The prices come from a relaxation
#: that splits replicas, so they understate what whole replicas make scarce: ×3 does best from
#: 300 × 150 up, ×1 at 100 × 50 (after ×3 there). Measured on the benchmark's rounds (seed 7)
#: against class ×3 then class ×1: listing ×3 then class ×1 makes the same plan at 100 × 50 and
#: plans 0.1 % (300 × 150), 1.3 % (1k × 500) and 0.8 % (10k × 2k) cheaper; listing ×3 then listing
#: ×1, 2.0 % dearer at 100 × 50; listing ×4 first, 0.6 % cheaper at 1k × 500 and 10k × 2k but 4.5 %
#: dearer at 300 × 150.
SHADOW_PASSES = (("listing", 3.0), ("class", 1.0))
#: Rounds of more demands than this skip the ``class`` shadow pass. A class (a GPU model in a region)
#: groups more listings as rounds grow (~3 at 1k × 500, ~12 at 10k × 2k), and one price per class
#: misprices most of them: on the benchmark's rounds at seeds 1–8 the class pass (after the listing
#: pass) made a better plan at 100 × 50 twice and at 300 × 150 twice, and never at 1k × 500 or
#: 10k × 2k, where it cost ~0.27 s of the 10k × 2k round for nothing.
CLASS_PASS_MAX_DEMANDS = 2000
#: The costliest demands :func:`recover_costliest` covers again after the passes. Measured on the
#: benchmark's rounds (seed 7): every demand at 1k × 500 and below, 2.2 % cheaper there (2.4 % at
#: 300 × 150); at 10k × 2k the 1,000 costliest make it 0.12 % cheaper in ~0.04 s, all 10k 0.19 % in
#: ~0.3 s; a second pass changes nothing.
RECOVER_DEMANDS = 1000
#: Branch-and-bound nodes per cover before it settles for the best found.
COVER_NODES = 4000


def _least_flexible_first(rnd: Round, i: int, options: int) -> tuple[float, ...]:
    """Priority; then fewer options first, by powers of two (a demand with few options has few ways
    left once others take them); among as flexible, more token-hours first (the biggest saving
    from a cheap listing). Measured against option count alone on the benchmark's 100 × 50 and
    1k × 500 rounds: as many tokens/s or more, 0.8 % and 1.4 % cheaper."""
    d = rnd.demands[i]
    return (-d.priority, int(math.log2(options + 1)), -d.duration_hours * d.tokens_per_second, d.id)


#: The order the fast method places demands in (key of demand index and its option count).
ORDER = _least_flexible_first


def engine_policy(rnd: Round) -> Stats:
    """Place ``rnd``'s demand; returns the solver's stats (its name and bounds)."""
    if sum(rnd.option_counts()) <= EXACT_OPTIONS:
        return _exact(rnd)
    return _fast(rnd)


def _exact(rnd: Round) -> Stats:
    started = time.perf_counter()
    counts, info = solve_milp(rnd)
    for (i, k, j), count in sorted(
        counts.items(), key=lambda kv: (-rnd.demands[kv[0][0]].alternatives[kv[0][1]].gpus_per_replica, kv[0])
    ):
        rnd.fill(i, k, j, count)
    top_up(rnd)
    lower = costs.from_units(math.floor(float(info["cost_lower_bound_units"]) + 1e-6))
    return {
        "solver": "substitution-milp",
        "tokens_upper_bound": float(info["tokens_upper_bound"]),
        "cost_lower_bound": str(lower),
        "milp_status": str(info["status"]),
        "options": sum(rnd.option_counts()),
        "milp_ms": ms_since(started),
    }


def _fast(rnd: Round) -> Stats:
    started = time.perf_counter()
    flexibility = rnd.option_counts()
    order = sorted(range(len(rnd.demands)), key=lambda i: ORDER(rnd, i, flexibility[i]))
    for i in order:
        cover(rnd, i)
    top_up(rnd, order)
    kept, lagrangian, pi, by_listing = "none", None, None, None  # (no batch matrices, no prices)
    if rnd.batch is not None and rnd.batch.model_pairs:
        lagrangian = Lagrangian(rnd)
        served = sum(rnd.served(i) for i in range(len(rnd.demands)))
        value, pi = lagrangian.best(served, _cost(rnd, order))
        listings = ListingPrices(lagrangian)
        _, listing_pi = listings.best(served, value * LISTING_TARGET, listings.expand(pi), LISTING_STEPS)
        by_listing = (listings, listing_pi)
        prices = {"listing": listings.listing_prices(listing_pi), "class": lagrangian.listing_prices(pi)}
        passes = [(k, x) for k, x in SHADOW_PASSES if k != "class" or len(rnd.demands) <= CLASS_PASS_MAX_DEMANDS]
        better = [f"{kind} x{scale:g}" for kind, scale in passes if _shadow_pass(rnd, order, prices[kind] * scale)]
        kept = ", ".join(better) or "dropped"
    moved = recover_costliest(rnd)
    placed_ms = ms_since(started)
    tokens_ub, lower, info = bounds(rnd, _cost(rnd, order), lagrangian, pi, by_listing)
    return {
        "solver": "substitution-cover",
        "tokens_upper_bound": tokens_ub,
        "cost_lower_bound": str(lower),
        "options": sum(flexibility),
        "shadow_pass": kept,
        "recovered": moved,
        "place_ms": placed_ms,
        "bound_ms": round(ms_since(started) - placed_ms, 2),
        **info,
    }


def _shadow_pass(rnd: Round, order: list[int], shadow: NDArray[np.float64]) -> bool:
    """Re-plan with ``shadow`` (per GPU of each listing) added to every listing's cost; keep the new
    plan only if it is better.

    The greedy covers see only market prices, so an early demand takes a cheap listing that a later
    one needed more (it had no cheap alternative): at 100 × 50 the first plan cost 18 % above the
    exact optimum. The Lagrangian relaxation of the first plan's bound prices each (GPU model,
    region) class's GPUs at what capacity is worth there (:class:`Lagrangian`), or each listing's
    (:class:`ListingPrices`, raised from those), times a scale (:data:`SHADOW_PASSES`); the new
    plan's covers choose at price + that shadow price, so demands with other ways to be served
    leave the contested listings. A demand serving less than in the
    plan before covers again at market prices, then :func:`repair` moves the demands that took its
    listings. Kept only if it serves more by priority, or as much for less; returns whether it was
    kept."""
    first, first_key = rnd.state(), _group_key(rnd, order)
    was = [rnd.served(i) for i in range(len(rnd.demands))]
    rnd.clear()
    for i in order:
        cover(rnd, i, shadow)
        if rnd.served(i) < was[i] - 1e-9:  # the shadow prices cost it tokens/s: cover at market prices
            got = rnd.served(i)
            rnd.unplace(i)
            cover(rnd, i)
            if rnd.served(i) <= got:
                rnd.unplace(i)
                cover(rnd, i, shadow)
    top_up(rnd, order)
    repair(rnd, order, was, first.keys)
    if _group_key(rnd, order) > first_key:
        return True
    rnd.restore(first)
    return False


def recover_costliest(rnd: Round, most: int | None = None) -> int:
    """Take each of the ``most`` (default :data:`RECOVER_DEMANDS`) costliest demands off in turn,
    costliest first, and cover it again at market prices on what is left (its own listings
    included); keep the new placement only if it serves more by priority, or as much for less.
    Returns how many were kept.

    A demand placed in a shadow pass chose at price + shadow price, and listings freed since it was
    placed were not there to choose: covered again alone it may find a cheaper way. Only its own
    placements change, so a kept move improves the whole plan by as much."""
    costliest = sorted(range(len(rnd.demands)), key=lambda i: (-rnd.cost_of(i), i))
    kept = 0
    for i in costliest[: RECOVER_DEMANDS if most is None else most]:
        if rnd.cost_of(i) == 0:
            break
        saved, before = rnd.save([i]), _group_key(rnd, [i])
        rnd.unplace(i)
        cover(rnd, i)
        top_up(rnd, [i])
        if _group_key(rnd, [i]) > before:
            kept += 1
        else:
            rnd.put_back(saved)
    return kept


def _group_key(rnd: Round, group: list[int]) -> tuple[float, ...]:
    """What the engine maximises over ``group``'s demands, in order: tokens/s served at each
    priority, highest first, then −cost."""
    by: dict[int, float] = {}
    for i in group:
        p = rnd.demands[i].priority
        by[p] = by.get(p, 0.0) + rnd.served(i)
    # (Rounded: the same placements summed in another order must compare equal.)
    return (*(round(by[p], 6) for p in sorted(by, reverse=True)), -_cost(rnd, group))


def _cost(rnd: Round, group: list[int]) -> float:
    """What ``group``'s placements cost the engine (units × hours)."""
    return float(sum(rnd.cost_of(i) for i in group))


def repair(rnd: Round, order: list[int], was: list[float], was_keys: dict[int, set[tuple[int, int, int]]]) -> None:
    """For each demand serving less than it did in an earlier plan (``was``, whose placement keys
    are ``was_keys``): take off it and the demands now on the listings it used then, re-cover it
    first and them after (in ``order``), and keep the result only if the group serves more by
    priority, or as much for less; else put everything back."""
    rank = {i: n for n, i in enumerate(order)}
    for i in order:
        if rnd.served(i) >= was[i] - 1e-9:
            continue
        mine = {j for _, _, j in was_keys.get(i, ())}
        others = sorted({d for d, _, j in rnd.placements if j in mine and d != i}, key=rank.__getitem__)
        group = [i, *others]
        saved, before = rnd.save(group), _group_key(rnd, group)
        for d in group:
            rnd.unplace(d)
        for d in group:
            cover(rnd, d)
            top_up(rnd, [d])
        if _group_key(rnd, group) <= before:
            rnd.put_back(saved)


def top_up(rnd: Round, order: list[int] | None = None) -> None:
    """Demands still below target take the cheapest per served token left (arrival order by default)."""
    for i in order if order is not None else rnd.arrival_order():
        if rnd.placed[i] < rnd.demands[i].tokens_per_second:
            rnd.cheapest_served(i)


def cover(rnd: Round, i: int, shadow: NDArray[np.float64] | None = None) -> None:
    """Place demand ``i``'s cheapest whole-replica cover of its missing tokens/s on what is left
    (most tokens/s first, then least cost × hours), searched by branch and bound over its options.
    ``shadow``: a price per GPU of each listing (units × hours) the choice adds to its cost (the
    shadow passes'); what the plan costs is always the real price."""
    demand = rnd.demands[i]
    missing = demand.tokens_per_second - rnd.placed[i]
    if missing <= 0:
        return
    arrays, batch, budget = rnd.ranked_arrays(i), rnd.batch, rnd.budget[i] - rnd.spent[i]
    if arrays is not None and batch is not None:  # all in the batch: one compiled call
        args = _compiled_args(rnd, i, arrays, batch, shadow)
        plan = select.cover_plan(*args, float(missing), budget, COVER_NODES).tolist()
    else:
        ints, floats = cover_items(rnd, i, missing, shadow)
        plan = select.plan_of(ints, floats, float(missing), budget, COVER_NODES).tolist()
    for k, j, count in plan:
        rnd.fill(i, k, j, count)


def cover_items(
    rnd: Round, i: int, missing: float, shadow: NDArray[np.float64] | None
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The items a cover of demand ``i`` searches (:func:`_items`), as arrays: (alternative,
    listing, slots, GPUs, price × GPUs) and (cost × GPUs, tokens/s). Compiled
    (:func:`matching.substitution_select.cover_items`) when all its alternatives lie in the batch."""
    arrays, batch = rnd.ranked_arrays(i), rnd.batch
    if arrays is None or batch is None:
        items = _items(rnd, i, missing, shadow)
        ints = np.array([(k, j, slots, size, price) for k, j, _, _, slots, size, price in items], dtype=np.int64)
        floats = np.array([(cost, tps) for _, _, cost, tps, *_ in items], dtype=np.float64)
        return ints.reshape(-1, 5), floats.reshape(-1, 2)
    return select.cover_items(*_compiled_args(rnd, i, arrays, batch, shadow), float(missing))


Ints = NDArray[np.int64]
Floats = NDArray[np.float64]
#: :func:`matching.substitution_select.cover_items`' arguments before ``missing``: the batch's bit
#: matrix and column tables, the demand's ranked alternatives, prices, subsidies, free GPUs (by
#: listing and by node), hours, shadow prices, whether the columns come in key order and that
#: order, and the listings and alternatives a cover keeps.
CoverArgs = tuple[
    NDArray[np.uint8], Ints, Ints, Floats, Ints, Ints, Ints, Ints, Ints, float, Floats, bool, Ints, int, int
]


def _compiled_args(
    rnd: Round,
    i: int,
    arrays: tuple[NDArray[np.float64], NDArray[np.int64]],
    batch: Batch,
    shadow: NDArray[np.float64] | None,
) -> CoverArgs:
    """:func:`matching.substitution_select.cover_items`' arguments for demand ``i`` up to ``missing``."""
    demand = rnd.demands[i]
    hours = float(demand.duration_hours)
    # Without a subsidy, a listing's cost × hours + shadow price is the same for every demand of
    # that duration: the columns are visited in that order and the scan stops at the listings it
    # needs. (A subsidy is the demand's own: its columns are all visited.)
    alike = demand.voucher is None
    return (
        batch.bits,
        batch.cols_table,
        batch.n_cols,
        *arrays,
        rnd.index.price,
        rnd.index.subsidy(demand),
        rnd.pool.max_free,
        rnd.pool.nodes,
        hours,
        batch.no_shadow if shadow is None else shadow,
        alike,
        batch.by_key(shadow, hours) if alike and shadow is not None else batch.by_price,
        COVER_LISTINGS,
        COVER_ALTERNATIVES,
    )


Item = tuple[int, int, float, float, int, int, int]  # (alt, listing, cost, tps, slots, size, price)


def _items(rnd: Round, i: int, missing: float, shadow: NDArray[np.float64] | None) -> list[Item]:
    """The options a cover of demand ``i`` searches: the :data:`COVER_ALTERNATIVES` alternatives
    cheapest per token/s on the capacity left now (each listing's cost plus its ``shadow`` price),
    each with its cheapest listings with room, up to those whose slots carry the missing tokens/s.

    An alternative's cheapest listing now costs at least its cheapest before the round, so the
    alternatives are visited by that (known without unpacking them) and the visit stops once it
    cannot beat the ones found: the chosen alternatives are exactly the cheapest now. (Demands with
    all their alternatives in the batch take the compiled :func:`cover_items`, which tests check
    against this.)"""
    alts = rnd.demands[i].alternatives
    hours = rnd.demands[i].duration_hours
    found: list[tuple[float, int, list[Item]]] = []
    for first, c in rnd.ranked_options(i):
        if len(found) >= COVER_ALTERNATIVES and first >= found[COVER_ALTERNATIVES - 1][0]:
            break
        rows = _cheapest_with_room(rnd, i, c, shadow)
        if not rows:
            continue
        size, tps = alts[c.alt].gpus_per_replica, alts[c.alt].tokens_per_second_per_replica
        mine: list[Item] = []
        carried = 0.0
        for j, cost, price in rows:
            slots = rnd.pool.slots(j, size)
            mine.append((c.alt, j, float(cost * size), tps, slots, size, price * size))
            carried += slots * tps
            if carried >= missing:
                break
        bisect.insort(found, (mine[0][2] / tps / hours, c.alt, mine))  # (alternatives are unique)
    items = [item for _, _, mine in found[:COVER_ALTERNATIVES] for item in mine]
    items.sort(key=lambda it: (it[2] / it[3], it[2], it[0], it[1]))
    return items


def _cheapest_with_room(
    rnd: Round, i: int, c: AnyCandidates, shadow: NDArray[np.float64] | None
) -> list[tuple[int, float, int]]:
    """Of candidates ``c`` of demand ``i``: the :data:`COVER_LISTINGS` cheapest listings (cost ×
    hours + the listing's ``shadow`` price; ties in listing order) with a node that fits a replica
    of the alternative, as (listing, that cost, price per GPU-hour), cheapest first."""
    size, hours = rnd.demands[i].alternatives[c.alt].gpus_per_replica, float(rnd.demands[i].duration_hours)
    (at,) = np.nonzero(rnd.pool.max_free[c.listings] >= size)
    cost = c.cost[at] * hours
    if shadow is not None:
        cost = cost + shadow[c.listings[at]]
    order = np.argsort(cost, kind="stable")[:COVER_LISTINGS]  # ties stay in listing order
    at, cost = at[order], cost[order]
    return list(zip(c.listings[at].tolist(), cost.tolist(), c.price[at].tolist(), strict=True))


def search(items: list[Item], target: float, budget: int) -> list[int]:
    """Replica counts per item: most tokens/s up to ``target``, then least cost, within ``budget``
    (price units per hour) and each item's slots; a branch and bound of at most :data:`COVER_NODES`
    nodes over the items, sorted by cost per token/s (:func:`matching.substitution_select.search`)."""
    counts = select.search(
        np.array([it[2] for it in items], dtype=np.float64),
        np.array([it[3] for it in items], dtype=np.float64),
        np.array([it[4] for it in items], dtype=np.int64),
        np.array([it[6] for it in items], dtype=np.int64),
        float(target),
        int(budget),
        COVER_NODES,
    )
    return cast(list[int], counts.tolist())
