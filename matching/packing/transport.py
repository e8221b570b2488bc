"""Nodes and the flow networks built on them: exact transportation and the GPU-unit relaxation.

Placements are ``dict[(request index, listing index), list[node index]]`` (one node per replica).
Both networks run on the compressed chains of :mod:`matching.graph.chains` (exact: same optimum as on
explicit edges).

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
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from matching.flow.lexicographic import FlowError, FlowResult, Network, reoptimize, solve_lexicographic
from matching.graph.chains import Chains, build_chains, decode
from matching.graph.edges import Arrays, price_pairs
from matching.problem import Problem

if TYPE_CHECKING:
    from collections.abc import Sequence


#: Direct (request, listing) arcs the relaxation may use beyond sparse classes: its vertex flows round
#: to whole replicas better than chain flows; the budget bounds memory on very large components.
RELAX_DIRECT_BUDGET = 3_000_000
#: A one-size component whose voucher requests × listings are at most this many gives each voucher
#: request direct arcs (re-priced in place when its budget binds); beyond, shadows (see
#: :func:`transport`), which cost fewer arcs but more pivots to re-price. Measured at 10k × 2k
#: (≤ 0.2 M pairs a component): direct re-plans take 0.04 s against 0.13 s; at 50k × 10k (4.5 M pairs in
#: the largest component) direct arcs would double that component's arcs and its first solve.
VOUCHER_DIRECT_PAIRS = 1_000_000

#: ``heads_of(listings, sizes)``: the head node and capacity of arcs into those listings (:func:`_network`).
HeadsOf = Callable[[NDArray[np.int64], NDArray[np.int64]], tuple[NDArray[np.int64], NDArray[np.int64]]]


def best_fit(free: list[int], size: int, count: int) -> list[int]:
    """Put up to ``count`` replicas of ``size`` GPUs on the nodes of ``free`` (free GPUs per node,
    updated in place), each on the fullest node that still fits it, so whole nodes stay whole for
    larger replicas. Returns the node of each replica placed: fewer than ``count`` when out of room."""
    nodes: list[int] = []
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


class NodePool:
    """Free GPUs per node of every listing, updated as replicas are placed (best fit)."""

    def __init__(self, problem: Problem) -> None:
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
        return best_fit(self.free[listing], size, count)


def levels_of(priorities: NDArray[np.int64]) -> tuple[NDArray[np.int64], int]:
    """Level index per entry (0 = highest priority) and the number of levels."""
    distinct = np.unique(priorities)[::-1]
    return np.searchsorted(-distinct, -priorities), len(distinct)


@dataclass
class Transport:
    """A solved transportation network, kept to be re-priced by :func:`retransport`."""

    chains: Chains
    net: Network
    spans: tuple[slice, ...]  # entry, exit and direct arcs
    result: FlowResult  # cost in 0.0001 CNY units over the requests' durations
    size: int
    vouchered: NDArray[np.int64]  # the requests holding a voucher
    shadow: tuple[NDArray[np.bool_], NDArray[np.bool_]]  # per entry and per direct arc: a shadow's (see transport)


def transport(
    arrays: Arrays,
    demand: dict[int, int],
    lsts: NDArray[np.int64],
    pool: NodePool,
    size: int,
    caps: dict[int, int] | None = None,
) -> tuple[dict[tuple[int, int], int], Transport]:
    """Exact lexicographic transportation of replicas of one ``size`` to listings ``lsts``.

    ``demand`` maps request index → replicas still wanted. Capacity of a listing is its current
    number of ``size`` slots in ``pool``, at most ``caps[listing]`` when ``caps`` is given (listings
    missing from it get none). Returns replicas per (request, listing) pair and the solve.

    Voucher requests are laid out for :func:`retransport`: when they reach at most
    :data:`VOUCHER_DIRECT_PAIRS` (request, listing) pairs, each gets direct arcs of its own; beyond
    that, the arcs of its *shadow* as well (the same request without its voucher), which reach the
    same listings at costs without subsidy, so never beat its own arcs: the optimum is unchanged.
    """
    reqs = np.array(sorted(demand), dtype=np.int64)
    cap_l = np.array([pool.slots(int(j), size) for j in lsts], dtype=np.int64)
    if caps is not None:
        cap_l = np.minimum(cap_l, [caps.get(int(j), 0) for j in lsts])
    lsts, cap_l = np.asarray(lsts, dtype=np.int64)[cap_l > 0], cap_l[cap_l > 0]
    vouchered = reqs[arrays.request_voucher[reqs] != 0]
    if len(vouchered) * len(lsts) <= VOUCHER_DIRECT_PAIRS:
        fits = {size: np.ones(len(lsts), dtype=bool)}
        ch = build_chains(arrays, reqs, lsts, fits, per_gpu=False, direct_vouchers=True)
        shadow = (np.zeros(len(ch.e_req), dtype=bool), np.zeros(len(ch.d_req), dtype=bool))
    else:
        ch, shadow = _chains_with_shadows(arrays, reqs, vouchered, lsts, size)
    d = np.array([demand[int(i)] for i in reqs], dtype=np.int64)
    first_l = len(reqs) + ch.n_nodes

    def heads(lst: NDArray[np.int64], _size: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        l_pos = np.searchsorted(lsts, lst)
        return first_l + l_pos, cap_l[l_pos]

    net, spans = _network(arrays, reqs, d, ch, heads, (first_l + np.arange(len(lsts)), cap_l), None)
    result = solve_lexicographic(net)
    return _pairs(ch, result, spans), Transport(ch, net, spans, result, size, vouchered, shadow)


def _chains_with_shadows(
    arrays: Arrays, reqs: NDArray[np.int64], vouchered: NDArray[np.int64], lsts: NDArray[np.int64], size: int
) -> tuple[Chains, tuple[NDArray[np.bool_], NDArray[np.bool_]]]:
    """Chains for ``reqs`` and the shadows of ``vouchered`` (appended as requests without a voucher,
    then mapped back to their owners), and which entry and direct arcs are shadows'."""
    n = len(arrays.request_voucher)
    columns = {f.name: getattr(arrays, f.name) for f in fields(arrays) if f.name.startswith("request_")}
    grown = {name: np.concatenate([col, col[vouchered]]) for name, col in columns.items()}
    # mypy checks a **dict against every field, regions (a list[str]) too; only request_* arrays are in it.
    extended = replace(arrays, **grown)  # type: ignore[arg-type]
    extended.request_voucher[n:] = 0
    everyone = np.concatenate([reqs, n + np.arange(len(vouchered))])
    ch = build_chains(extended, everyone, lsts, {size: np.ones(len(lsts), dtype=bool)}, per_gpu=False)
    owner = np.concatenate([np.arange(n), vouchered])
    shadow = (ch.e_req >= n, ch.d_req >= n)
    ch.e_req, ch.d_req = owner[ch.e_req], owner[ch.d_req]
    return ch, shadow


def retransport(arrays: Arrays, solved: Transport) -> tuple[dict[tuple[int, int], int], Transport]:
    """``solved`` again with the requests that ``arrays`` strips of their voucher priced without it,
    restarted from its optimum (only such removals may differ from the arrays it was built from).

    Their direct arcs are re-priced without subsidy. Their chain entries get a penalty above any
    subsidy they could earn, so the flow leaves them for their shadows' arcs, which reach the same
    listings at the same costs less the subsidy. Either way the optimum is exactly the one without
    their subsidies, and only costs change: the simplex restarts from the old optimum and makes
    only the pivots the change calls for.
    """
    ch, spans, entry_shadow, direct_shadow = solved.chains, solved.spans, *solved.shadow
    stripped = solved.vouchered[arrays.request_voucher[solved.vouchered] == 0]
    if not len(stripped):
        return _pairs(ch, solved.result, spans), solved
    costs = solved.net.costs.copy()
    own = ~direct_shadow & np.isin(ch.d_req, stripped)
    per_gpu_hour = price_pairs(arrays, ch.d_req[own], ch.d_lst[own]).cost
    hours = arrays.request_duration_hours[ch.d_req[own]]
    costs[np.flatnonzero(own) + spans[2].start] = per_gpu_hour * hours * solved.size
    penalty = int(arrays.subsidy_units.max()) * int(arrays.request_duration_hours[stripped].max()) * solved.size + 1
    penalised = np.zeros(len(costs), dtype=bool)
    penalised[spans[0]] = ~entry_shadow & np.isin(ch.e_req, stripped)
    net = replace(solved.net, costs=costs + penalty * penalised)
    result = reoptimize(net, solved.result)
    if np.any(result.flows[penalised]):  # cannot happen: a shadow's arc always does better
        raise FlowError("a stripped voucher request still uses its voucher's arcs")
    return _pairs(ch, result, spans), replace(solved, net=net, result=result)


def _pairs(ch: Chains, result: FlowResult, spans: tuple[slice, ...]) -> dict[tuple[int, int], int]:
    req, lst, amount = decode(ch, *(result.flows[span] for span in spans))
    return {(int(i), int(j)): int(f) for i, j, f in zip(req, lst, amount, strict=True)}


def _network(
    arrays: Arrays,
    reqs: NDArray[np.int64],
    d: NDArray[np.int64],
    ch: Chains,
    heads_of: HeadsOf,
    sink_arcs: tuple[NDArray[np.int64], NDArray[np.int64]],
    extra: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]] | None,
) -> tuple[Network, tuple[slice, ...]]:
    """Hubs, requests, chain nodes, [listing nodes], sink; node numbers below are past the hubs.

    Arc groups in a fixed order: hub→request, entry, chain link, exit, direct, [extra], listing→sink.
    ``heads_of(listings, sizes)`` gives the head node and capacity of arcs into those listings.
    Only hub, extra and sink arcs carry their real capacities: every other arc's flow is bounded by
    them, and redundant tight bounds only add degenerate pivots to the simplex.
    Returns the network and the slices of its entry, exit and direct arcs.
    """
    level, n_levels = levels_of(arrays.request_priority[reqs])
    exit_heads, _ = heads_of(ch.x_lst, ch.x_size)
    direct_heads, _ = heads_of(ch.d_lst, ch.d_size)
    d_pos = np.searchsorted(reqs, ch.d_req)
    big = int(d.sum())
    base = n_levels + len(reqs)
    r_pos = np.searchsorted(reqs, ch.e_req)
    s_t, s_c = sink_arcs
    e_t, e_h, e_c = extra if extra is not None else (np.zeros(0, np.int64),) * 3
    highest = int(np.concatenate([exit_heads, direct_heads, s_t, e_h]).max(initial=-1))
    n_nodes = n_levels + max(len(reqs) + ch.n_nodes, highest + 1) + 1
    groups = [
        (level, n_levels + np.arange(len(reqs)), d, 0),
        (n_levels + r_pos, base + ch.e_node, big, ch.e_cost),
        (base + ch.links, base + ch.links + 1, big, 0),
        (base + ch.x_node, n_levels + exit_heads, big, ch.x_cost),
        (n_levels + d_pos, n_levels + direct_heads, big, ch.d_cost),
        (n_levels + e_t, n_levels + e_h, e_c, 0),
        (n_levels + s_t, np.full(len(s_t), n_nodes - 1), s_c, 0),
    ]
    arrays_ = [[np.broadcast_to(np.asarray(g[k], dtype=np.int64), len(g[0])) for g in groups] for k in range(4)]
    net = Network(
        n_levels=n_levels,
        n_nodes=n_nodes,
        tails=np.concatenate(arrays_[0]),
        heads=np.concatenate(arrays_[1]),
        caps=np.concatenate(arrays_[2]),
        costs=np.concatenate(arrays_[3]),
        level_supply=np.bincount(level, weights=d, minlength=n_levels).astype(np.int64),
    )
    e0 = len(reqs)
    x0 = e0 + len(ch.e_req) + len(ch.links)
    d0 = x0 + len(ch.x_node)
    return net, (slice(e0, e0 + len(ch.e_req)), slice(x0, d0), slice(d0, d0 + len(ch.d_req)))


def is_chain(sizes: list[int]) -> bool:
    """Whether every size divides the next larger one (e.g. 1, 2, 4, 8)."""
    ordered = sorted(sizes)
    return all(b % a == 0 for a, b in itertools.pairwise(ordered))


@dataclass
class Relaxation:
    gpus: dict[tuple[int, int], int]  # GPU flow per (request, listing)
    cost: int
    served: NDArray[np.int64]  # GPUs per priority level


def relax(
    arrays: Arrays,
    reqs: NDArray[np.int64],
    lsts: NDArray[np.int64],
    free: Sequence[Sequence[int]],
    targets: NDArray[np.int64] | None = None,
    replicas: NDArray[np.int64] | None = None,
) -> Relaxation:
    """GPU-unit min-cost flow from ``reqs`` to ``lsts``: a lower bound on cost, upper bound on service.

    Each listing is a chain of nodes, one per replica size present (largest first), whose outgoing
    arc holds t × Σ⌊free/t⌋ GPUs (see module docstring); without a divisibility chain every size
    node feeds one listing node capped at the free GPUs, which is weaker but still valid.
    ``free[j]`` are listing j's free GPUs per node; ``replicas`` (default: the requests' own) the
    replicas wanted per request of ``reqs``; ``targets`` fixes the GPUs served per priority level.
    """
    reqs, lsts = np.asarray(reqs, dtype=np.int64), np.asarray(lsts, dtype=np.int64)
    sizes = sorted({int(s) for s in arrays.request_size[reqs]}, reverse=True)
    chain = is_chain(sizes)
    n_sz = len(sizes) + (0 if chain else 1)
    usable = np.array([[s * slots_of(free[int(j)], s) for s in sizes] for j in lsts])
    usable = usable.reshape(len(lsts), len(sizes))
    fits = {s: usable[:, k] > 0 for k, s in enumerate(sizes)}
    ch = build_chains(arrays, reqs, lsts, fits, per_gpu=True, budget=RELAX_DIRECT_BUDGET)
    wanted = arrays.request_replicas[reqs] if replicas is None else np.asarray(replicas, dtype=np.int64)
    d = wanted * arrays.request_size[reqs]
    first_l = len(reqs) + ch.n_nodes
    size_k = {s: k for k, s in enumerate(sizes)}
    k_table = np.zeros(max(sizes, default=0) + 1, dtype=np.int64)
    k_table[list(size_k)] = list(size_k.values())

    def heads(lst: NDArray[np.int64], size: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        l_pos, k = np.searchsorted(lsts, lst), k_table[size]
        return first_l + n_sz * l_pos + k, usable[l_pos, k]

    inner, last = _listing_chains(free, lsts, sizes, chain, usable, first_l, n_sz)
    net, spans = _network(arrays, reqs, d, ch, heads, last, inner)
    result = solve_lexicographic(net, targets)
    return Relaxation(_pairs(ch, result, spans), result.cost, result.served)


def slots_of(node_free: Sequence[int], size: int) -> int:
    return sum(f // size for f in node_free)


def _listing_chains(
    free: Sequence[Sequence[int]],
    lsts: NDArray[np.int64],
    sizes: list[int],
    chain: bool,
    usable: NDArray[np.int64],
    first_l: int,
    n_sz: int,
) -> tuple[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]], tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """Arcs inside each listing ((tails, heads, caps)) and from each listing to the sink."""
    tails, heads, caps, s_tails, s_caps = [], [], [], [], []
    for p, j in enumerate(lsts):
        node = first_l + n_sz * p
        if chain:
            for k in range(len(sizes) - 1):
                tails.append(node + k)
                heads.append(node + k + 1)
                caps.append(int(usable[p, k]))
            s_tails.append(node + len(sizes) - 1)
            s_caps.append(int(usable[p, -1]))
        else:
            total = node + len(sizes)
            for k in range(len(sizes)):
                tails.append(node + k)
                heads.append(total)
                caps.append(int(usable[p, k]))
            s_tails.append(total)
            s_caps.append(sum(free[int(j)]))

    def as_arr(v: list[int]) -> NDArray[np.int64]:
        return np.array(v, dtype=np.int64)

    return (as_arr(tails), as_arr(heads), as_arr(caps)), (as_arr(s_tails), as_arr(s_caps))
