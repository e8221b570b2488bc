"""Nodes and the flow networks built on them: exact transportation and the GPU-unit relaxation.

Placements are ``dict[edge index, list[node index]]`` (one node per replica), edge indices being
positions in the round's :class:`matching.edges.Edges`.

Why the relaxation is tight for power-of-two sizes: when the replica sizes present form a
divisibility chain (1 | 2 | 4 | 8), a multiset of replicas fits on a listing's free nodes if and only
if, for every size t present, the GPUs of replicas of size ≥ t are at most t × Σ_k ⌊free_k / t⌋.
(Placing a replica of size s anywhere it fits lowers ⌊free_k / t⌋ summed over nodes by exactly s / t
for every t dividing s, so largest-first any-fit never gets stuck while these inequalities hold.)
The relaxation therefore models each listing as a chain of nodes with exactly those capacities: its
only slack is that a request's GPUs need not be a multiple of its replica size.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from matching.edges import Arrays, Edges
from matching.flow import FlowResult, Network, solve_lexicographic
from matching.problem import Problem


class NodePool:
    """Free GPUs per node of every listing, updated as replicas are placed (best fit)."""

    def __init__(self, problem: Problem):
        self.free = [list(x.node_free) for x in problem.listings]

    def slots(self, listing: int, size: int) -> int:
        return sum(f // size for f in self.free[listing])

    def fits(self, listing: int, size: int) -> bool:
        return max(self.free[listing], default=0) >= size

    def place(self, listing: int, size: int, count: int) -> list[int]:
        """Put ``count`` replicas of ``size`` on the fullest nodes that still fit them.

        Best fit keeps whole nodes whole for larger replicas. Returns fewer nodes than ``count``
        when the listing runs out of room.
        """
        free, nodes = self.free[listing], []
        while count:
            fits = [(f, k) for k, f in enumerate(free) if f >= size]
            if not fits:
                break
            k = min(fits)[1]
            take = min(count, free[k] // size)
            nodes += [k] * take
            free[k] -= take * size
            count -= take
        return nodes


def levels_of(priorities: np.ndarray) -> tuple[np.ndarray, int]:
    """Level index per entry (0 = highest priority) and the number of levels."""
    distinct = np.unique(priorities)[::-1]
    return np.searchsorted(-distinct, -priorities), len(distinct)


def transport(
    arrays: Arrays,
    edges: Edges,
    sel: np.ndarray,
    demand: dict[int, int],
    pool: NodePool,
    size: int,
    limit: dict[int, int] | None = None,
) -> tuple[dict[int, int], FlowResult]:
    """Exact lexicographic transportation of replicas of one ``size`` over edges ``sel``.

    ``demand`` maps request index → replicas still wanted. Capacity of a listing is its current
    number of ``size`` slots in ``pool``. Returns replicas per edge and the flow result (cost in
    0.0001 CNY units over the requests' durations). ``limit`` optionally caps replicas per listing.
    """
    reqs = np.array(sorted(demand), dtype=np.int64)
    lsts = np.unique(edges.lst[sel])
    cap_l = np.array([pool.slots(int(j), size) for j in lsts], dtype=np.int64)
    if limit is not None:
        cap_l = np.minimum(cap_l, [limit.get(int(j), 0) for j in lsts])
    r_pos, l_pos = np.searchsorted(reqs, edges.req[sel]), np.searchsorted(lsts, edges.lst[sel])
    keep = cap_l[l_pos] > 0
    sel, r_pos, l_pos = sel[keep], r_pos[keep], l_pos[keep]
    d = np.array([demand[int(i)] for i in reqs], dtype=np.int64)
    level, n_levels = levels_of(arrays.r_priority[reqs])
    unit_cost = edges.cost[sel] * size * arrays.r_duration_h[edges.req[sel]]
    first_l = n_levels + len(reqs)
    net = _network(
        n_levels,
        first_l + len(lsts) + 1,
        hub_arcs=(level, n_levels + np.arange(len(reqs)), d),
        mid_arcs=(n_levels + r_pos, first_l + l_pos, np.minimum(d[r_pos], cap_l[l_pos]), unit_cost),
        sink_arcs=(first_l + np.arange(len(lsts)), cap_l),
        level_supply=np.bincount(level, weights=d, minlength=n_levels).astype(np.int64),
    )
    result = solve_lexicographic(net)
    mid = result.flows[len(reqs) : len(reqs) + len(sel)]
    return {int(e): int(f) for e, f in zip(sel, mid, strict=True) if f > 0}, result


def _network(n_levels, n_nodes, hub_arcs, mid_arcs, sink_arcs, level_supply, extra=None) -> Network:
    """Arcs in a fixed order: hub→request, request→listing, [extra], listing→sink."""
    sink = n_nodes - 1
    h_t, h_h, h_c = hub_arcs
    m_t, m_h, m_c, m_cost = mid_arcs
    s_t, s_c = sink_arcs
    e_t, e_h, e_c = extra if extra is not None else (np.zeros(0, np.int64),) * 3
    zeros = np.zeros
    return Network(
        n_levels=n_levels,
        n_nodes=n_nodes,
        tails=np.concatenate([h_t, m_t, e_t, s_t]).astype(np.int64),
        heads=np.concatenate([h_h, m_h, e_h, np.full(len(s_t), sink)]).astype(np.int64),
        caps=np.concatenate([h_c, m_c, e_c, s_c]).astype(np.int64),
        costs=np.concatenate([zeros(len(h_t)), m_cost, zeros(len(e_t)), zeros(len(s_t))]).astype(np.int64),
        level_supply=level_supply,
    )


def is_chain(sizes: list[int]) -> bool:
    """Whether every size divides the next larger one (e.g. 1, 2, 4, 8)."""
    ordered = sorted(sizes)
    return all(b % a == 0 for a, b in itertools.pairwise(ordered))


@dataclass
class Relaxation:
    gpus: dict[int, int]  # GPU flow per edge
    cost: int
    served: np.ndarray  # GPUs per priority level


def relax(
    arrays: Arrays, edges: Edges, sel: np.ndarray, problem: Problem, targets: np.ndarray | None = None
) -> Relaxation:
    """GPU-unit min-cost flow over edges ``sel``: a lower bound on cost and upper bound on service.

    Each listing is a chain of nodes, one per replica size present (largest first), whose outgoing
    arc holds t × Σ⌊free/t⌋ GPUs (see module docstring); without a divisibility chain every size
    node feeds one listing node capped at the free GPUs, which is weaker but still valid.
    """
    reqs, lsts = np.unique(edges.req[sel]), np.unique(edges.lst[sel])
    sizes = sorted({int(s) for s in arrays.r_size[reqs]}, reverse=True)
    chain = is_chain(sizes)
    level, n_levels = levels_of(arrays.r_priority[reqs])
    d = arrays.r_replicas[reqs] * arrays.r_size[reqs]
    n_sz = len(sizes) + (0 if chain else 1)
    first_l = n_levels + len(reqs)
    node = {(int(j), s): first_l + n_sz * p + k for p, j in enumerate(lsts) for k, s in enumerate(sizes)}
    r_pos = np.searchsorted(reqs, edges.req[sel])
    size_k = {s: k for k, s in enumerate(sizes)}
    k_of = np.array([size_k[int(s)] for s in arrays.r_size[reqs]], dtype=np.int64)
    heads = first_l + n_sz * np.searchsorted(lsts, edges.lst[sel]) + k_of[r_pos]
    inner, last = _listing_chains(problem, lsts, sizes, chain, node, n_sz, first_l)
    net = _network(
        n_levels,
        first_l + n_sz * len(lsts) + 1,
        hub_arcs=(level, n_levels + np.arange(len(reqs)), d),
        mid_arcs=(n_levels + r_pos, heads, d[r_pos], edges.cost[sel] * arrays.r_duration_h[edges.req[sel]]),
        sink_arcs=last,
        level_supply=np.bincount(level, weights=d, minlength=n_levels).astype(np.int64),
        extra=inner,
    )
    result = solve_lexicographic(net, targets)
    mid = result.flows[len(reqs) : len(reqs) + len(sel)]
    return Relaxation({int(e): int(f) for e, f in zip(sel, mid, strict=True) if f > 0}, result.cost, result.served)


def _listing_chains(problem, lsts, sizes, chain, node, n_sz, first_l):
    """Arcs inside each listing ((tails, heads, caps)) and from each listing to the sink."""
    tails, heads, caps, s_tails, s_caps = [], [], [], [], []
    for p, j in enumerate(lsts):
        free = problem.listings[int(j)].node_free
        usable = [s * sum(f // s for f in free) for s in sizes]
        if chain:
            for k in range(len(sizes) - 1):
                tails.append(node[int(j), sizes[k]])
                heads.append(node[int(j), sizes[k + 1]])
                caps.append(usable[k])
            s_tails.append(node[int(j), sizes[-1]])
            s_caps.append(usable[-1])
        else:
            total = first_l + n_sz * p + len(sizes)
            for k, s in enumerate(sizes):
                tails.append(node[int(j), s])
                heads.append(total)
                caps.append(usable[k])
            s_tails.append(total)
            s_caps.append(sum(free))
    as_arr = lambda v: np.array(v, dtype=np.int64)  # noqa: E731
    return (as_arr(tails), as_arr(heads), as_arr(caps)), (as_arr(s_tails), as_arr(s_caps))
