"""Rounds that look ahead: scarce capacity priced at its opportunity cost, far-off requests held.

A myopic round places each request on its cheapest feasible listing, so cheap capacity near a city
goes to whichever latency-tolerant request comes first, and is gone when real-time work that only
that capacity can serve arrives in the next round. The look-ahead gives every listing a
*reservation* ``r_j`` (CNY per GPU-hour): what its capacity has recently been worth to the market at
the margin, i.e. its recent scarcity rent (:mod:`matching.prices`; the marketplace averages the
stored clearing prices per region and GPU model, ``marketplace.selectors.prices``). The rule, stated
once here and applied by :func:`matching.graph.edges.price_pairs`:

    A request ``i`` placed on listing ``j`` adds to the engine's cost, per GPU-hour, the premium
    ``r_j − min(r_k for the listings k that i can use in this round)``.

So a request pays for scarce capacity only as far as it could have used less scarce capacity
instead: on the least reserved listing it can reach it pays nothing, and a request whose only
options are equally reserved (typically real-time work that only the near GPUs can serve) never
pays at all. The premium only ever ranks the placements of the same served replicas: the engine
still serves as many replicas as it can first, so the look-ahead never leaves servable work
unserved within a round, and it never changes an edge's feasibility, so it never breaks a latency
bound, a price cap or a window. The premium is the engine's cost, not the buyer's price: it is
kept apart in :attr:`~matching.problem.Assignment.reservation_per_gpu_hour` and never billed.

Holding: a request whose ``start_by`` is more than a *horizon* away may be left out of the rounds
of the *period* it was submitted in (:func:`held`), so that the requests that can wait are placed
together when the period ends (a call market), rather than each ahead of the next; it always
re-enters at least ``horizon`` before its ``start_by``, and waits at most one period.

With no reservations (the default) and no holding, a round is exactly today's myopic round.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray

from matching import costs
from matching.latency import LatencyClass, bound_of
from matching.problem import InferenceDemand, ListingSpec, RequestSpec


def reservation_floors(
    listing_reservation: NDArray[np.int64], req: NDArray[np.int64], lst: NDArray[np.int64], n_requests: int
) -> NDArray[np.int64]:
    """Per request, the lowest reservation (0.0001 CNY units) among the listings it can use.

    ``(req, lst)`` are the round's feasible pairs; a request without any gets 0 (it is never placed).
    """
    floor = np.full(n_requests, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(floor, req, listing_reservation[lst])
    floor[floor == np.iinfo(np.int64).max] = 0
    return floor


def premium_units(
    listing_reservation: NDArray[np.int64],
    request_floor: NDArray[np.int64],
    req: NDArray[np.int64],
    lst: NDArray[np.int64],
) -> NDArray[np.int64]:
    """The rule above, for pairs ``(req, lst)``: ``r_j − floor_i`` in 0.0001 CNY units per GPU-hour.

    Clipped at 0 for a pair that is not feasible (explanations price listings a request cannot use).
    """
    premium: NDArray[np.int64] = np.maximum(listing_reservation[lst] - request_floor[req], 0)
    return premium


#: A listing's reservation is this many times its recent mean rent; 1: the rent itself. On the online
#: benchmark (bench/bench_online.py; docs/economics.md has the rows for 1, 3 and 10) a larger scale
#: serves more only without holding (92.2 → 94.3 % of offline at 10); with holding 3 or 10 serve
#: about the same as 1 (98.6, 98.8 against 98.7 %) and cost more per GPU-hour.
RESERVATION_SCALE = Decimal(1)


def reservations_by_listing(
    listings: Sequence[ListingSpec],
    recent_rent: dict[tuple[str, str], Decimal],
    scale: Decimal = RESERVATION_SCALE,
) -> dict[int, Decimal]:
    """Each listing's reservation: ``scale`` × the recent rent of its (region, GPU model), when positive."""
    out = {}
    for listing in listings:
        rent = recent_rent.get((listing.region, listing.gpu_model), Decimal(0))
        if rent > 0:
            out[listing.id] = costs.money(rent * scale)
    return out


def recent_rent(rents: Iterable[tuple[str, str, Decimal | None]]) -> dict[tuple[str, str], Decimal]:
    """The recent rent per (region, GPU model): the mean of the recorded rents (one per round that
    priced it; unpriced records, ``None``, are skipped), quantized to 0.0001 CNY.

    A mean, not the latest value: a round's rent is 0 until capacity runs out, so the latest round
    says little about what the capacity is worth over a day; the mean over the recent rounds is the
    expected value of one more GPU-hour there.
    """
    sums: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for region, gpu_model, rent in rents:
        if rent is None:
            continue
        sums[region, gpu_model] += rent
        counts[region, gpu_model] += 1
    return {key: costs.money(sums[key] / counts[key]) for key in sums}


#: A request is far off (may be held) while its ``start_by`` is more than this away.
HOLD_HORIZON = timedelta(hours=1)
#: The call period of far-off requests, by default (``MATCHING_LOOKAHEAD_PERIOD_MINUTES``).
HOLD_PERIOD = timedelta(hours=1)
#: The clock that call periods are counted on (any fixed instant would do; this one is readable).
PERIOD_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def held(
    request: RequestSpec | InferenceDemand,
    now: datetime,
    *,
    submitted_at: datetime,
    horizon: timedelta,
    period: timedelta,
) -> bool:
    """Whether a look-ahead round leaves ``request`` for a later round.

    A request is *far off* while its ``start_by`` is more than ``horizon`` away. Far-off requests
    gather for a call: one submitted in a ``period`` (counted from :data:`PERIOD_EPOCH`) is held
    until that period ends, and then offered to every round with all the others of its period. So a
    request waits at most one ``period``, re-enters at least ``horizon`` before its ``start_by``,
    and requests that can wait are placed together rather than each ahead of the next. Work that may
    only use near capacity (:func:`near_only`) is never held.
    """
    return held_until(request, now, submitted_at=submitted_at, horizon=horizon, period=period) is not None


def held_until(
    request: RequestSpec | InferenceDemand,
    now: datetime,
    *,
    submitted_at: datetime,
    horizon: timedelta,
    period: timedelta,
) -> datetime | None:
    """When a ``request`` that a look-ahead round leaves out at ``now`` (:func:`held`) re-enters
    the rounds: the end of its call period, or ``horizon`` before its ``start_by`` if sooner;
    ``None`` when it is not held."""
    far_off = request.start_by - now > horizon
    if not far_off or near_only(request):
        return None
    index = (submitted_at - PERIOD_EPOCH) // period
    if (now - PERIOD_EPOCH) // period != index:
        return None
    return min(PERIOD_EPOCH + (index + 1) * period, request.start_by - horizon)


def near_only(request: RequestSpec | InferenceDemand) -> bool:
    """Whether ``request`` may only use capacity within the real-time class's RTT of its origin
    (:func:`~matching.latency.bound_of`): a GPU-form bound, or every alternative's RTT
    bound, at most that. Such work is never held: waiting for the call finds it no cheaper capacity
    (it can only use the near GPUs), and it loses the near GPUs to the requests that arrive
    meanwhile (on the idle80 scenario holding it cost the real-time work 146 GPU-hours)."""
    near = bound_of(LatencyClass.REALTIME) or 0.0
    if isinstance(request, InferenceDemand):
        return bool(request.alternatives) and all(a.rtt_bound_ms <= near for a in request.alternatives)
    return request.max_rtt_ms is not None and request.max_rtt_ms <= near
