"""Guidance for an idle listing: why open demand leaves it idle, and the highest price that fills it.

Two parts, both pure (no Django):

- :func:`diagnose` sorts every open request of the listing's GPU model by the *first* rule that keeps
  it off the listing (:func:`matching.costs.blocking_rule`, the engine's own order: node size, reach
  within the latency bound, reliability, window, a free node big enough), with the price cap checked
  last so that "your price is above the cap" is only said of demand that could otherwise use the
  listing. The result is structured (:class:`Reason`: a code, a count and parameters); the
  marketplace words it in the reader's language.
- :func:`suggest_price` finds the highest price, in whole fen (0.01 CNY) between a floor and a ceiling,
  at which the engine's re-solved plan places at least one replica on the listing, and the GPU-hours
  it would sell there. Every probe is an exact re-solve of the same market with only this listing's
  price changed.

Assumption (tested in tests/matching/test_guidance.py): for a fixed market, whether the listing is
placed at all is monotone non-increasing in its price. Raising one listing's price only removes its
edges (a price above a cap) and raises its edge costs; the engine serves as many GPUs as it can first,
then minimises cost, so a listing not used at price p is not used at any higher price. Under it a
bisection over fen is exact: the answer ``p`` is placed and ``p + 0.01`` is not, both by re-solving.
The number of re-solves is at most ``2 + ceil(log2(fen between floor and ceiling))`` (≤ 19 for the
whole price range up to 1,000 CNY), bounded by ``max_solves``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from matching import costs
from matching.problem import ListingSpec, Plan, Problem, RequestSpec, sold_gpu_hours

FEN = Decimal("0.01")
#: The most exact re-solves one guidance may cost (a price range of 1,000 CNY needs 19).
MAX_SOLVES = 20

# Reason codes, in the order the rules are checked (the order the sentences are shown in): the
# engine's rule codes (matching.costs), with the price cap last, framed by two of guidance's own.
NO_DEMAND = "no_demand"
NODE_SIZE = costs.NODE_SIZE
OUT_OF_REACH = costs.OUT_OF_REACH
RELIABILITY = costs.RELIABILITY
OPENS_LATE = costs.OPENS_LATE
WINDOW_SHORT = costs.WINDOW_SHORT
NO_FREE_NODE = costs.NO_FREE_NODE
PRICE_ABOVE_CAP = costs.PRICE_ABOVE_CAP
OUTCOMPETED = "outcompeted"
REASON_ORDER = (
    NO_DEMAND,
    NODE_SIZE,
    OUT_OF_REACH,
    RELIABILITY,
    OPENS_LATE,
    WINDOW_SHORT,
    NO_FREE_NODE,
    PRICE_ABOVE_CAP,
    OUTCOMPETED,
)


@dataclass(frozen=True)
class Reason:
    """One reason the listing's free GPUs stay idle: ``count`` open requests blocked by rule ``code``.

    ``params`` by code: ``node_size``: ``gpus_per_node``, ``sizes`` (the replica sizes wanted, sorted);
    ``out_of_reach``: ``region``, ``all`` (no open request reaches it); ``opens_late``/``window_short``:
    ``hours`` (the shortest duration asked); ``no_free_node``: ``size`` (the smallest replica asked),
    ``largest_free``; ``price_above_cap``: ``cap`` (the highest cap among them), ``price``;
    ``outcompeted``: nothing.
    """

    code: str
    count: int
    params: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class PriceProbe:
    """One exact re-solve: the listing at ``price`` sells ``gpu_hours`` GPU-hours."""

    price: Decimal
    gpu_hours: int


@dataclass(frozen=True)
class Suggestion:
    """The highest price in fen at which the listing is placed (``None``: at no price from ``floor``
    up), the GPU-hours it would sell there, and every probe made (in order) with the time taken."""

    price: Decimal | None
    gpu_hours: int
    probes: tuple[PriceProbe, ...]
    elapsed_ms: float


def listing_in(problem: Problem, listing_id: int) -> ListingSpec | None:
    return next((x for x in problem.listings if x.id == listing_id), None)


def at_price(problem: Problem, listing_id: int, price: Decimal) -> Problem:
    """``problem`` with only listing ``listing_id``'s price changed to ``price``."""
    listings = tuple(replace(x, price_per_gpu_hour=price) if x.id == listing_id else x for x in problem.listings)
    return replace(problem, listings=listings)


def _block(request: RequestSpec, listing: ListingSpec, problem: Problem) -> str | None:
    """The first rule other than the price cap that keeps ``request`` (of the listing's model) off
    ``listing``: :func:`matching.costs.blocking_rule` without its price check."""
    rtt = costs.rtt_between(problem.rtt_ms, request.origin, listing.region)
    return costs.blocking_rule(request, listing, rtt, problem.now, check_price=False)


def within_reach(problem: Problem, listing: ListingSpec) -> list[RequestSpec]:
    """Open requests of the listing's model that every rule but the price cap lets use it."""
    return [r for r in problem.requests if r.gpu_model == listing.gpu_model and _block(r, listing, problem) is None]


def diagnose(problem: Problem, listing_id: int, gpu_hours_at_price: int) -> list[Reason]:
    """Why open demand leaves the listing idle, one :class:`Reason` per rule that blocks any request,
    in :data:`REASON_ORDER`. ``gpu_hours_at_price``: what the engine sells on it at its own price (a
    re-solve); when 0, requests that every rule admits were placed elsewhere (``outcompeted``)."""
    listing = listing_in(problem, listing_id)
    if listing is None:
        raise ValueError(f"listing {listing_id} is not in the problem")
    demand = [r for r in problem.requests if r.gpu_model == listing.gpu_model]
    if not demand:
        return [Reason(NO_DEMAND, 0)]
    by_code: dict[str, list[RequestSpec]] = {}
    price = costs.money(listing.price_per_gpu_hour)
    for request in demand:
        code = _block(request, listing, problem)
        if code is None:
            code = PRICE_ABOVE_CAP if price > costs.money(request.max_price_per_gpu_hour) else OUTCOMPETED
        by_code.setdefault(code, []).append(request)
    if gpu_hours_at_price > 0:
        by_code.pop(OUTCOMPETED, None)  # it is placed: nothing beat it
    reasons = []
    for code in REASON_ORDER:
        blocked = by_code.get(code)
        if blocked:
            reasons.append(Reason(code, len(blocked), _params(code, blocked, listing, len(demand))))
    return reasons


def _params(code: str, blocked: list[RequestSpec], listing: ListingSpec, demand: int) -> dict[str, object]:
    if code == NODE_SIZE:
        return {"gpus_per_node": listing.gpus_per_node, "sizes": sorted({r.gpus_per_replica for r in blocked})}
    if code == OUT_OF_REACH:
        return {"region": listing.region, "all": len(blocked) == demand}
    if code in (OPENS_LATE, WINDOW_SHORT):
        return {"hours": min(r.duration_hours for r in blocked)}
    if code == NO_FREE_NODE:
        return {"size": min(r.gpus_per_replica for r in blocked), "largest_free": max(listing.node_free, default=0)}
    if code == PRICE_ABOVE_CAP:
        cap = max(costs.money(r.max_price_per_gpu_hour) for r in blocked)
        return {"cap": cap, "price": costs.money(listing.price_per_gpu_hour)}
    return {}


def price_ceiling(problem: Problem, listing_id: int, maximum: Decimal) -> Decimal | None:
    """The highest price worth probing: the highest cap among the requests every other rule lets use
    the listing (above it no request may use it), at most ``maximum``; ``None`` when none may."""
    listing = listing_in(problem, listing_id)
    reach = [] if listing is None else within_reach(problem, listing)
    if not reach:
        return None
    return min(maximum, max(costs.money(r.max_price_per_gpu_hour) for r in reach))


def suggest_price(
    problem: Problem,
    listing_id: int,
    solve: Callable[[Problem], Plan],
    *,
    floor: Decimal,
    ceiling: Decimal | None,
    max_solves: int = MAX_SOLVES,
) -> Suggestion:
    """The highest price ``p`` in whole fen, ``floor ≤ p ≤ ceiling``, at which ``solve`` places the
    listing (at least one replica), and its GPU-hours at ``p``; ``price=None`` when it is not placed
    even at ``floor`` (rounded up to a fen). Exact under the monotonicity stated in the module's
    docstring: ``p`` is placed and ``p + 0.01`` is not (or is above the ceiling, where no request's cap
    admits it). Raises ``ValueError`` when the range would need more than ``max_solves`` re-solves."""
    started = time.perf_counter()
    probes: list[PriceProbe] = []
    lo_fen = int((floor / FEN).to_integral_value(rounding=ROUND_CEILING))
    hi_fen = -1 if ceiling is None else int((ceiling / FEN).to_integral_value(rounding=ROUND_FLOOR))
    if hi_fen < lo_fen:
        return Suggestion(None, 0, (), _ms(started))
    needed = 2 + math.ceil(math.log2(max(1, hi_fen - lo_fen)))
    if needed > max_solves:
        raise ValueError(f"a price range of {hi_fen - lo_fen} fen needs {needed} re-solves > {max_solves}")
    sold: dict[int, int] = {}

    def probe(fen: int) -> int:
        price = Decimal(fen) * FEN
        shifted = at_price(problem, listing_id, price)
        sold[fen] = sold_gpu_hours(shifted, solve(shifted), listing_id)
        probes.append(PriceProbe(price, sold[fen]))
        return sold[fen]

    if probe(hi_fen) > 0:
        return Suggestion(Decimal(hi_fen) * FEN, sold[hi_fen], tuple(probes), _ms(started))
    if hi_fen == lo_fen or probe(lo_fen) == 0:
        return Suggestion(None, 0, tuple(probes), _ms(started))
    lo, hi = lo_fen, hi_fen  # placed at lo, not at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(mid) > 0:
            lo = mid
        else:
            hi = mid
    return Suggestion(Decimal(lo) * FEN, sold[lo], tuple(probes), _ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
