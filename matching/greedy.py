"""Cheapest-first greedy: what a buyer gets by sorting offers by price. Kept for benchmarks and tests.

Requests go in order of priority (highest first), then arrival (lower id first); each takes the
cheapest feasible listings (by its own cost per GPU-hour, then listing index) until its replicas are
placed or its options run out. It proves no bound: ``lower_bound`` is 0 and ``gap`` is infinite
when cost > 0. A request's options are computed when its turn comes (numpy over its model's
listings), so the greedy never holds the whole dense edge set in memory.
"""

from __future__ import annotations

import time
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray

from matching.graph.edges import HOUR_US, Arrays, slots
from matching.packing.transport import NodePool
from matching.problem import Plan, Problem
from matching.timings import ms_since


class Options:
    """Feasible listings of a request, cheapest first (same rules as :func:`matching.costs.infeasibility`)."""

    def __init__(self, problem: Problem, arrays: Arrays) -> None:
        self.a = arrays
        self.by_model = {int(m): np.flatnonzero(arrays.listing_model == m) for m in np.unique(arrays.listing_model)}
        self.free = problem.listings
        self._room: dict[tuple[int, int], NDArray[np.bool_]] = {}

    def _has_room(self, model: int, size: int) -> NDArray[np.bool_]:
        key = (model, size)
        if key not in self._room:
            self._room[key] = np.array([slots(self.free[j].node_free, size) > 0 for j in self.by_model[model]], bool)
        return self._room[key]

    def of(self, i: int) -> NDArray[np.int64]:
        a, model, size = self.a, int(self.a.request_model[i]), int(self.a.request_size[i])
        lsts = self.by_model.get(model)
        if lsts is None:
            return np.zeros(0, dtype=np.int64)
        start = a.listing_start[lsts]
        rtt = a.rtt[a.request_origin[i], a.listing_region[lsts]]
        ok = self._has_room(model, size) & (a.listing_gpus_per_node[lsts] >= size)
        ok &= a.listing_price[lsts] <= a.request_cap[i]
        ok &= a.listing_reliability[lsts] >= a.request_min_reliability[i]
        ok &= start <= a.request_start_by[i]
        ok &= start + a.request_duration_hours[i] * HOUR_US <= a.listing_until[lsts]
        ok &= np.isfinite(rtt) & (rtt <= a.request_bound[i])
        mine: NDArray[np.int64] = lsts[ok]
        cost = a.listing_price[mine] + a.listing_penalty[mine] - a.subsidy_units[a.request_voucher[i], mine]
        cost = cost + a.latency_units[a.request_weight[i], a.request_origin[i], a.listing_region[mine]]
        return mine[np.lexsort((mine, cost))]


def greedy_fill(
    problem: Problem, arrays: Arrays, reqs: NDArray[np.int64], pool: NodePool
) -> dict[tuple[int, int], list[int]]:
    """Greedy placements ((request, listing) → nodes) for requests ``reqs``, consuming ``pool``."""
    placements: dict[tuple[int, int], list[int]] = {}
    options = Options(problem, arrays)
    order = sorted((int(i) for i in reqs), key=lambda i: (-problem.requests[i].priority, problem.requests[i].id))
    for i in order:
        size, left = int(arrays.request_size[i]), problem.requests[i].replicas
        for j in options.of(i).tolist():
            if not left:
                break
            if not pool.fits(j, size):
                continue
            nodes = pool.place(j, size, left)
            if nodes:
                placements[i, j] = nodes
                left -= len(nodes)
    return placements


def greedy(problem: Problem) -> Plan:
    """The greedy baseline's plan for ``problem`` (same cost model and explanations as the solver)."""
    from matching.assemble import assemble  # local: assemble imports explain, which is heavier
    from matching.graph.components import feasibility
    from matching.graph.edges import build_arrays

    t0 = time.perf_counter()
    arrays = build_arrays(problem)
    pool = NodePool(problem)
    placements = greedy_fill(problem, arrays, np.arange(len(problem.requests)), pool)
    timings = {"solve": ms_since(t0)}
    graph = feasibility(problem, arrays)
    return assemble(
        problem,
        arrays,
        graph,
        placements,
        pool,
        solver="greedy-cheapest-first",
        lower_bound=Decimal(0),
        stats={},
        timings=timings,
    )
