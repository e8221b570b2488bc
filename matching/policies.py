"""Placement policies a round can use: the engine, and the two baselines buyers get by hand.

Every policy applies the interruptible tier's rules around its placement (:mod:`matching.interruptible`),
then places inference demand on the capacity left, by the same policy (:mod:`matching.substitution`).

- ``engine``: :func:`matching.solver.solve` — serve as many replicas as possible, then at least
  cost, over the whole round at once.
- ``nearest``: "nearest region first", what a buyer does picking regions by hand: each request in
  turn (priority, then arrival) takes the feasible listings with the lowest RTT to its origin first
  (then its own cost per GPU-hour, then listing index).
- ``cheapest``: "cheapest first", sorting offers by price: :func:`matching.greedy.greedy`.

Both baselines respect every constraint the engine does — GPU model, node size, latency bound,
price cap, window and free capacity (the feasible options come from :class:`matching.greedy.Options`,
the same rules as :func:`matching.costs.infeasibility`) — and are priced, voucher-capped and
explained by :func:`matching.assemble.assemble` exactly as the engine's plans are. What differs is
only the order in which requests choose. Pure Python: no Django.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from functools import partial

import numpy as np
from numpy.typing import NDArray

from matching.assemble import assemble
from matching.graph.components import feasibility
from matching.graph.edges import Arrays, build_arrays
from matching.greedy import Options, greedy
from matching.interruptible import with_tiers
from matching.packing.transport import NodePool
from matching.problem import Plan, Problem
from matching.solver import solve
from matching.substitution import with_inference
from matching.timings import ms_since

ENGINE, NEAREST, CHEAPEST = "engine", "nearest", "cheapest"
#: Every policy, in the order reports list them.
POLICIES = (ENGINE, NEAREST, CHEAPEST)
NEAREST_SOLVER = "nearest-region-first"


def planner(policy: str) -> Callable[[Problem], Plan]:
    """The plan builder of ``policy`` (one of :data:`POLICIES`); ``ValueError`` for any other name."""
    planners = {ENGINE: solve, NEAREST: nearest_first, CHEAPEST: greedy}
    if policy not in planners:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    # Every policy keeps the interruptible tier's rules (and is unchanged when nobody uses the tier),
    # then places inference demand on what is left (unchanged when there is none).
    return partial(with_inference, base=partial(with_tiers, base=planners[policy]), policy=policy)


def arrival_order(problem: Problem) -> list[int]:
    """Request indices in the order buyers act: higher priority first, then earlier id."""
    return sorted(range(len(problem.requests)), key=lambda i: (-problem.requests[i].priority, problem.requests[i].id))


def nearest_options(arrays: Arrays, options: Options, i: int) -> NDArray[np.int64]:
    """Feasible listing indices of request ``i``, lowest RTT to its origin first.

    ``options.of`` yields them cheapest first (cost, then index); a stable sort on RTT keeps that
    order among listings at the same RTT.
    """
    mine = options.of(i)
    rtt = arrays.rtt[arrays.request_origin[i], arrays.listing_region[mine]]
    return mine[np.argsort(rtt, kind="stable")]


def nearest_fill(problem: Problem, arrays: Arrays, pool: NodePool) -> dict[tuple[int, int], list[int]]:
    """Nearest-first placements ((request, listing) → nodes), consuming ``pool``.

    Each request, in :func:`arrival_order`, fills its replicas from its nearest feasible listing
    onwards until placed or out of options; a request never looks at what later ones will need.
    """
    placements: dict[tuple[int, int], list[int]] = {}
    options = Options(problem, arrays)
    for i in arrival_order(problem):
        size, left = int(arrays.request_size[i]), problem.requests[i].replicas
        for j in nearest_options(arrays, options, i).tolist():
            if not left:
                break
            nodes = pool.place(j, size, left) if pool.fits(j, size) else []
            if nodes:
                placements[i, j] = nodes
                left -= len(nodes)
    return placements


def nearest_first(problem: Problem) -> Plan:
    """The nearest-region-first plan for ``problem`` (same cost model and explanations as the engine).

    Like the greedy it proves no bound: ``lower_bound`` is 0.
    """
    started = time.perf_counter()
    arrays = build_arrays(problem)
    pool = NodePool(problem)
    placements = nearest_fill(problem, arrays, pool)
    timings = {"solve": ms_since(started)}
    return assemble(
        problem,
        arrays,
        feasibility(problem, arrays),
        placements,
        pool,
        solver=NEAREST_SOLVER,
        lower_bound=Decimal(0),
        stats={},
        timings=timings,
    )
