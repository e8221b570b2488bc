"""Column arrays of a Problem, edge pricing, and the direct (uncompressed) feasibility graph.

The scalar rules live in :mod:`matching.costs`; this module applies exactly the same rules to whole
arrays with numpy. Money is integer units of 0.0001 CNY; the per-term caches call the scalar
functions, so both paths agree exactly. The solver works on the compressed graph of
:mod:`matching.graph.chains`; :func:`build_edges` (every feasible pair, explicitly) is the reference
definition the chains are tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray

from matching import costs, lookahead
from matching.problem import Problem, VoucherTerms

#: The engine's time unit: integer microseconds after the round's ``now`` (int64 holds ±292,000
#: years, so any window a datetime can hold fits).
MICROSECOND = timedelta(microseconds=1)
HOUR_US = 3_600_000_000
#: Upper bound on request × listing cells evaluated at once (bounds peak memory).
_CHUNK_CELLS = 2_000_000


def us_since(now: datetime, when: datetime) -> int:
    """``when`` in the engine's time unit: whole microseconds after ``now`` (negative before it)."""
    return (when - now) // MICROSECOND


@dataclass
class Arrays:
    """Column arrays of a Problem's requests (``request_*``) and listings (``listing_*``), one entry per row."""

    regions: list[str]
    rtt: NDArray[np.float64]  # (n_regions, n_regions) ms, inf when unknown
    request_model: NDArray[np.int64]
    request_origin: NDArray[np.int64]
    request_size: NDArray[np.int64]
    request_replicas: NDArray[np.int64]
    request_bound: NDArray[np.float64]  # ms, inf when unbounded
    request_cap: NDArray[np.int64]
    request_start_by: NDArray[np.int64]
    request_duration_hours: NDArray[np.int64]
    request_weight: NDArray[np.int64]  # index into latency-cost table
    request_voucher: NDArray[np.int64]  # index into subsidy table (0 = none)
    request_priority: NDArray[np.int64]
    request_min_reliability: NDArray[np.int64]  # 0.0001 units, -1 = no bound
    listing_model: NDArray[np.int64]
    listing_region: NDArray[np.int64]
    listing_gpus_per_node: NDArray[np.int64]
    listing_price: NDArray[np.int64]
    #: The engine's pre-emption penalty per GPU-hour (0 but on matching.interruptible's virtual
    #: listings): in every edge's cost, never in the price-cap rule.
    listing_penalty: NDArray[np.int64]
    listing_start: NDArray[np.int64]
    listing_until: NDArray[np.int64]
    listing_reliability: NDArray[np.int64]  # 0.0001 units, -1 = too little history
    latency_units: NDArray[np.int64]  # (n_weights, n_regions, n_regions)
    subsidy_units: NDArray[np.int64]  # (n_voucher_classes, n_listings)
    #: The look-ahead (:mod:`matching.lookahead`): each listing's reservation and each request's
    #: lowest reservation among the listings it can use, 0.0001 CNY units (all 0 when off).
    listing_reservation: NDArray[np.int64]
    request_reservation_floor: NDArray[np.int64]


@dataclass
class Edges:
    """Feasible edges, sorted by (request, listing); costs per GPU-hour in 0.0001 CNY units."""

    req: NDArray[np.int64]
    lst: NDArray[np.int64]
    cost: NDArray[np.int64]
    subsidy: NDArray[np.int64]
    rtt: NDArray[np.float64]
    reservation: NDArray[np.int64]  # the look-ahead's premium, included in ``cost``

    def __len__(self) -> int:
        return len(self.req)


def slots(node_free: Sequence[int], size: int) -> int:
    """Replicas of ``size`` GPUs that fit on these free nodes."""
    return sum(f // size for f in node_free)


def build_arrays(problem: Problem) -> Arrays:
    """Column arrays and cost tables for ``problem`` (deterministic: codes sorted)."""
    reqs, lsts, now = problem.requests, problem.listings, problem.now
    regions = sorted({r.origin for r in reqs} | {x.region for x in lsts})
    rix = {code: k for k, code in enumerate(regions)}
    models = {m: k for k, m in enumerate(sorted({r.gpu_model for r in reqs} | {x.gpu_model for x in lsts}))}
    rtt = _rtt_matrix(problem, regions)
    weights = sorted({r.latency_weight for r in reqs})
    wix = {w: k for k, w in enumerate(weights)}
    vkeys, request_voucher = _voucher_classes(problem)
    inf = np.inf
    arrays = Arrays(
        regions=regions,
        rtt=rtt,
        request_model=np.array([models[r.gpu_model] for r in reqs], dtype=np.int64),
        request_origin=np.array([rix[r.origin] for r in reqs], dtype=np.int64),
        request_size=np.array([r.gpus_per_replica for r in reqs], dtype=np.int64),
        request_replicas=np.array([r.replicas for r in reqs], dtype=np.int64),
        request_bound=np.array([inf if r.max_rtt_ms is None else r.max_rtt_ms for r in reqs], dtype=float),
        request_cap=np.array([costs.money_units(r.max_price_per_gpu_hour) for r in reqs], dtype=np.int64),
        request_start_by=np.array([us_since(now, r.start_by) for r in reqs], dtype=np.int64),
        request_duration_hours=np.array([r.duration_hours for r in reqs], dtype=np.int64),
        request_weight=np.array([wix[r.latency_weight] for r in reqs], dtype=np.int64),
        request_voucher=request_voucher,
        request_priority=np.array([r.priority for r in reqs], dtype=np.int64),
        request_min_reliability=np.array([costs.reliability_units(r.min_reliability) for r in reqs], dtype=np.int64),
        listing_model=np.array([models[x.gpu_model] for x in lsts], dtype=np.int64),
        listing_region=np.array([rix[x.region] for x in lsts], dtype=np.int64),
        listing_gpus_per_node=np.array([x.gpus_per_node for x in lsts], dtype=np.int64),
        listing_price=np.array([costs.money_units(x.price_per_gpu_hour) for x in lsts], dtype=np.int64),
        listing_penalty=np.array([costs.money_units(x.preemption_penalty_per_gpu_hour) for x in lsts], dtype=np.int64),
        listing_start=np.array([max(0, us_since(now, x.available_from)) for x in lsts], dtype=np.int64),
        listing_until=np.array([us_since(now, x.available_until) for x in lsts], dtype=np.int64),
        listing_reliability=np.array([costs.reliability_units(x.reliability) for x in lsts], dtype=np.int64),
        latency_units=_latency_table(weights, rtt),
        subsidy_units=_subsidy_table(problem, vkeys),
        listing_reservation=np.array(
            [costs.money_units(problem.reservations.get(x.id, Decimal(0))) for x in lsts], dtype=np.int64
        ),
        request_reservation_floor=np.zeros(len(reqs), dtype=np.int64),
    )
    if arrays.listing_reservation.any():
        req, lst = feasible_pairs(problem, arrays)
        arrays.request_reservation_floor = lookahead.reservation_floors(arrays.listing_reservation, req, lst, len(reqs))
    return arrays


def _rtt_matrix(problem: Problem, regions: list[str]) -> NDArray[np.float64]:
    rtt = np.full((len(regions), len(regions)), np.inf)
    for i, a in enumerate(regions):
        for j, b in enumerate(regions):
            value = costs.rtt_between(problem.rtt_ms, a, b)
            if value is not None:
                rtt[i, j] = value
    return rtt


def _latency_table(weights: list[Decimal], rtt: NDArray[np.float64]) -> NDArray[np.int64]:
    table = np.zeros((max(1, len(weights)), *rtt.shape), dtype=np.int64)
    finite = np.isfinite(rtt)
    cache: dict[tuple[Decimal, float], int] = {}
    for k, w in enumerate(weights):
        for a, b in zip(*np.nonzero(finite), strict=True):
            key = (w, float(rtt[a, b]))
            if key not in cache:
                cache[key] = costs.money_units(costs.latency_cost_per_gpu_hour(w, key[1]))
            table[k, a, b] = cache[key]
    return table


#: What a voucher's subsidy depends on: (percent, eligible regions, providers, GPU models).
VoucherKey = tuple[Decimal, tuple[str, ...], tuple[int, ...], tuple[str, ...]]


def _voucher_key(voucher: VoucherTerms) -> VoucherKey:
    return (voucher.percent, voucher.eligible_regions, voucher.eligible_providers, voucher.eligible_gpu_models)


def _voucher_classes(problem: Problem) -> tuple[list[VoucherKey], NDArray[np.int64]]:
    keys = sorted({_voucher_key(r.voucher) for r in problem.requests if r.voucher is not None}, key=repr)
    kix = {k: n + 1 for n, k in enumerate(keys)}
    idx = [0 if r.voucher is None else kix[_voucher_key(r.voucher)] for r in problem.requests]
    return keys, np.array(idx, dtype=np.int64)


def _subsidy_table(problem: Problem, keys: list[VoucherKey]) -> NDArray[np.int64]:
    """(1 + n_classes, n_listings) subsidy units; row 0 is 'no voucher'."""
    table = np.zeros((1 + len(keys), len(problem.listings)), dtype=np.int64)
    cache: dict[tuple[Decimal, Decimal], int] = {}
    for k, (percent, regions, providers, models) in enumerate(keys, start=1):
        for j, x in enumerate(problem.listings):
            if (regions and x.region not in regions) or (providers and x.provider_id not in providers):
                continue
            if models and x.gpu_model not in models:
                continue
            key = (percent, x.price_per_gpu_hour)
            if key not in cache:
                cache[key] = costs.money_units(costs.subsidy_of(percent, x.price_per_gpu_hour))
            table[k, j] = cache[key]
    return table


def build_edges(problem: Problem, arrays: Arrays) -> Edges:
    """All feasible edges (same rules as :func:`matching.costs.infeasibility`), by model in chunks."""
    req, lst = feasible_pairs(problem, arrays)
    return _priced(arrays, req, lst)


def feasible_pairs(problem: Problem, arrays: Arrays) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Every feasible (request, listing) pair, unpriced, grouped by model (requests in order within)."""
    parts = []
    for model in np.unique(arrays.request_model):
        reqs = np.nonzero(arrays.request_model == model)[0]
        lsts = np.nonzero(arrays.listing_model == model)[0]
        if len(lsts) == 0:
            continue
        slot_table = _slot_table(problem, lsts, np.unique(arrays.request_size[reqs]))
        step = max(1, _CHUNK_CELLS // len(lsts))
        for lo in range(0, len(reqs), step):
            parts.append(_chunk_edges(arrays, reqs[lo : lo + step], lsts, slot_table))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    req, lst = (np.concatenate([p[k] for p in parts]) for k in range(2))
    return req, lst


def edges_between(problem: Problem, arrays: Arrays, reqs: NDArray[np.int64], lsts: NDArray[np.int64]) -> Edges:
    """Every feasible edge from requests ``reqs`` to listings ``lsts`` (one GPU model), explicitly.

    For small components only (the exact integer program); dense in requests × listings.
    """
    slot_table = _slot_table(problem, lsts, np.unique(arrays.request_size[reqs]))
    req, lst = _chunk_edges(arrays, reqs, lsts, slot_table)
    return _priced(arrays, req, lst)


def _slot_table(problem: Problem, lsts: NDArray[np.int64], sizes: NDArray[np.int64]) -> dict[int, NDArray[np.int64]]:
    return {
        int(s): np.array([slots(problem.listings[j].node_free, int(s)) for j in lsts], dtype=np.int64) for s in sizes
    }


def _chunk_edges(
    a: Arrays, reqs: NDArray[np.int64], lsts: NDArray[np.int64], slot_table: dict[int, NDArray[np.int64]]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    col = np.newaxis
    size = a.request_size[reqs]
    ok = a.listing_gpus_per_node[lsts][None, :] >= size[:, col]
    rtt = a.rtt[a.request_origin[reqs][:, col], a.listing_region[lsts][None, :]]
    ok &= np.isfinite(rtt) & (rtt <= a.request_bound[reqs][:, col])
    ok &= a.listing_price[lsts][None, :] <= a.request_cap[reqs][:, col]
    ok &= a.listing_reliability[lsts][None, :] >= a.request_min_reliability[reqs][:, col]
    start = a.listing_start[lsts][None, :]
    ok &= start <= a.request_start_by[reqs][:, col]
    ok &= start + a.request_duration_hours[reqs][:, col] * HOUR_US <= a.listing_until[lsts][None, :]
    for s, table in slot_table.items():
        ok[size == s] &= table[None, :] > 0
    ri, lj = np.nonzero(ok)
    return reqs[ri], lsts[lj]


def _priced(a: Arrays, req: NDArray[np.int64], lst: NDArray[np.int64]) -> Edges:
    # Chunks are row-major (request, then listing) and each request lies in one chunk, so a stable
    # sort on the request alone yields (request, listing) order.
    order = np.argsort(req, kind="stable")
    return price_pairs(a, req[order], lst[order])


def price_pairs(a: Arrays, req: NDArray[np.int64] | Sequence[int], lst: NDArray[np.int64] | Sequence[int]) -> Edges:
    """Cost terms of the given (request, listing) pairs, in the given order (no feasibility check).

    ``cost`` is what the engine minimises: price − subsidy + latency cost + the look-ahead's
    reservation premium (``reservation``, :func:`matching.lookahead.premium_units`; 0 when off) +
    the pre-emption penalty of a running interruptible match's GPUs (``listing_penalty``,
    :mod:`matching.interruptible`; 0 on a real listing). Both are engine costs, never prices.
    """
    req, lst = np.asarray(req, dtype=np.int64), np.asarray(lst, dtype=np.int64)
    origin, region = a.request_origin[req], a.listing_region[lst]
    subsidy = a.subsidy_units[a.request_voucher[req], lst]
    latency = a.latency_units[a.request_weight[req], origin, region]
    reservation = lookahead.premium_units(a.listing_reservation, a.request_reservation_floor, req, lst)
    cost = a.listing_price[lst] + a.listing_penalty[lst] - subsidy + latency + reservation
    return Edges(req=req, lst=lst, cost=cost, subsidy=subsidy, rtt=a.rtt[origin, region], reservation=reservation)
