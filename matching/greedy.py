"""Cheapest-first greedy: what a buyer gets by sorting offers by price. Kept for benchmarks and tests.

Requests go in order of priority (highest first), then arrival (lower id first); each takes the
cheapest feasible listings (by its own cost per GPU-hour) until its replicas are placed or its
options run out. It proves no bound: ``lower_bound`` is 0 and ``gap`` is infinite when cost > 0.
"""

from __future__ import annotations

import time
from decimal import Decimal

import numpy as np

from matching.edges import Arrays, Edges, build_arrays, build_edges
from matching.packing import NodePool
from matching.problem import Plan, Problem


def greedy_fill(
    problem: Problem, arrays: Arrays, edges: Edges, sel: np.ndarray, pool: NodePool
) -> dict[int, list[int]]:
    """Greedy placements (edge index → nodes) over edges ``sel``, consuming ``pool``."""
    placements: dict[int, list[int]] = {}
    sel = np.sort(sel)
    reqs = np.unique(edges.req[sel])
    order = sorted(reqs, key=lambda i: (-problem.requests[i].priority, problem.requests[i].id))
    starts = np.searchsorted(edges.req[sel], reqs)
    ends = np.searchsorted(edges.req[sel], reqs, side="right")
    span = {int(i): (s, e) for i, s, e in zip(reqs, starts, ends, strict=True)}
    for i in order:
        s, e = span[int(i)]
        mine = sel[s:e]
        mine = mine[np.lexsort((edges.lst[mine], edges.cost[mine]))]
        _fill_request(problem, arrays, edges, int(i), mine, pool, placements)
    return placements


def _fill_request(problem, arrays, edges, i, mine, pool, placements) -> None:
    size, left = int(arrays.r_size[i]), problem.requests[i].replicas
    for e in mine:
        if not left:
            return
        j = int(edges.lst[e])
        if not pool.fits(j, size):
            continue
        nodes = pool.place(j, size, left)
        if nodes:
            placements[int(e)] = nodes
            left -= len(nodes)


def greedy(problem: Problem) -> Plan:
    """The greedy baseline's plan for ``problem`` (same cost model and explanations as the solver)."""
    from matching.assemble import assemble  # local: assemble imports explain, which is heavier

    t0 = time.perf_counter()
    arrays = build_arrays(problem)
    edges = build_edges(problem, arrays)
    pool = NodePool(problem)
    placements = greedy_fill(problem, arrays, edges, np.arange(len(edges)), pool)
    timings = {"solve": (time.perf_counter() - t0) * 1000}
    return assemble(
        problem,
        arrays,
        edges,
        placements,
        pool,
        solver="greedy-cheapest-first",
        lower_bound=Decimal(0),
        stats={},
        timings=timings,
    )
