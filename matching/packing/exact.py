"""Exact mixed-size plans for small components: an integer program over (request, listing) replica counts.

For replica sizes forming a divisibility chain (1 | 2 | 4 | 8), a multiset of replicas fits on a
listing's nodes iff, for every size t present, the GPUs of replicas of size ≥ t are at most
t × Σ_k ⌊free_k / t⌋ (:mod:`matching.packing.transport`). So with x_ij = replicas of request i on listing j:

    Σ_j x_ij ≤ replicas_i                                      for every request i
    Σ_{i: size_i ≥ t} size_i × x_ij ≤ t × Σ_k ⌊free_jk / t⌋    for every listing j and size t
    x_ij ∈ ℤ≥0 on feasible edges only

is the exact problem. Solved lexicographically with scipy's HiGHS MILP: maximise the served GPUs of
each priority level in turn (each fixed before the next), then minimise cost. Used only when the
component is small (:data:`MAX_PAIRS`) and every stage proves optimality within :data:`NODE_LIMIT`;
otherwise the caller falls back to the relaxation + repair. Placement on nodes is largest-first,
which the chain condition guarantees to succeed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from matching.graph.edges import Arrays, Edges, slots
from matching.packing.transport import is_chain, levels_of

#: Largest component (feasible (request, listing) pairs) the integer program is tried on.
MAX_PAIRS = 2_500
#: Branch-and-bound nodes per MILP stage; a stage that does not prove optimality within them abandons
#: the exact attempt. A node count, not a clock, so the outcome does not depend on machine load.
NODE_LIMIT = 500
#: Safety net only (pathological LPs); normal stages end far sooner.
TIME_LIMIT_S = 10.0


def exact_counts(
    arrays: Arrays, reqs: NDArray[np.int64], edges: Edges, free: Sequence[Sequence[int]]
) -> tuple[dict[tuple[int, int], int], int] | None:
    """Optimal replicas per (request, listing) and a proven lower bound on cost (0.0001 CNY units),
    or ``None`` when the instance is too large, not a size chain, or not solved to optimality."""
    sizes = sorted({int(s) for s in arrays.request_size[reqs]})
    if not len(edges) or len(edges) > MAX_PAIRS or not is_chain(sizes):
        return None
    size = arrays.request_size[edges.req].astype(float)
    constraints = [_request_rows(arrays, reqs, edges), _listing_rows(edges, size, sizes, free)]
    level, n_levels = levels_of(arrays.request_priority[reqs])
    e_level = level[np.searchsorted(reqs, edges.req)]
    integrality = np.ones(len(edges))
    for q in range(n_levels):
        gpus = np.where(e_level == q, size, 0.0)
        res = milp(-gpus, constraints=constraints, integrality=integrality, bounds=Bounds(0, np.inf), options=_opts())
        if res.status != 0:
            return None
        served = round(-res.fun)
        constraints.append(LinearConstraint(gpus, served - 0.5, np.inf))
    unit = (edges.cost * arrays.request_size[edges.req] * arrays.request_duration_hours[edges.req]).astype(float)
    res = milp(unit, constraints=constraints, integrality=integrality, bounds=Bounds(0, np.inf), options=_opts())
    if res.status != 0:
        return None
    x = np.rint(res.x).astype(np.int64)
    cost = int(np.sum(x * edges.cost * arrays.request_size[edges.req] * arrays.request_duration_hours[edges.req]))
    bound = getattr(res, "mip_dual_bound", None)
    lower = cost if bound is None or not math.isfinite(bound) else min(cost, math.floor(bound))
    counts = {(int(i), int(j)): int(n) for i, j, n in zip(edges.req, edges.lst, x, strict=True) if n > 0}
    return counts, lower


def _opts() -> dict[str, int | float | bool]:
    return {"node_limit": NODE_LIMIT, "time_limit": TIME_LIMIT_S, "mip_rel_gap": 0.0, "disp": False}


def _request_rows(arrays: Arrays, reqs: NDArray[np.int64], edges: Edges) -> LinearConstraint:
    rows = np.searchsorted(reqs, edges.req)
    a = coo_matrix((np.ones(len(edges)), (rows, np.arange(len(edges)))), shape=(len(reqs), len(edges)))
    return LinearConstraint(a.tocsr(), -np.inf, arrays.request_replicas[reqs].astype(float))


def _listing_rows(
    edges: Edges, size: NDArray[np.float64], sizes: list[int], free: Sequence[Sequence[int]]
) -> LinearConstraint:
    lsts = np.unique(edges.lst)
    l_pos = np.searchsorted(lsts, edges.lst)
    rows, cols, vals = [], [], []
    ub: list[int] = []
    for k, t in enumerate(sizes):
        sel = np.flatnonzero(size >= t)
        rows.append(k * len(lsts) + l_pos[sel])
        cols.append(sel)
        vals.append(size[sel])
        ub.extend(t * slots(free[int(j)], t) for j in lsts)
    a = coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(sizes) * len(lsts), len(edges))
    )
    return LinearConstraint(a.tocsr(), -np.inf, np.array(ub, dtype=float))
