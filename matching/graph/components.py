"""Split a round's graph into its connected components, which are solved apart (on threads).

Vocabulary: a *shard* is one GPU model's round in the marketplace (one lock, one task); a
*component* is a connected piece of one round's feasibility graph. Components never cross GPU
models, so a shard holds one or more components.

Two requests are in one component when a chain of feasible edges joins them (which keeps each
component to one GPU model, since edges never cross models) or when they want the same GPU model
and carry the same voucher code (its budget is shared, so they are best capped together). Listings
follow their requests. Components are ordered by (GPU model, smallest request index):
deterministic.

A voucher used for several GPU models can still span components and shards:
:func:`matching.solver.solve` caps budgets over the whole problem it is given, and when shards are
solved apart the service applying the plans must re-check each voucher's remaining value (it has
to under row locks anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from matching.graph.chains import Chains, build_chains
from matching.graph.edges import Arrays, build_arrays, slots
from matching.problem import Problem


@dataclass
class Component:
    """One independent part of a round: global request and listing indices (one GPU model)."""

    requests: NDArray[np.int64]
    listings: NDArray[np.int64]


@dataclass
class Graph:
    """The round's feasibility graph at the listings' initial free capacity, one chain set per model."""

    chains: list[Chains]
    has_edge: NDArray[np.bool_]  # per request: at least one feasible listing
    pairs: int  # feasible (request, listing) edges


def feasibility(problem: Problem, arrays: Arrays) -> Graph:
    """Compressed feasibility graph of the whole round (see :mod:`matching.graph.chains`)."""
    out, has_edge = [], np.zeros(len(problem.requests), dtype=bool)
    for model in np.unique(arrays.request_model):
        reqs = np.flatnonzero(arrays.request_model == model)
        lsts = np.flatnonzero(arrays.listing_model == model)
        sizes = np.unique(arrays.request_size[reqs])
        fits = {int(s): np.array([slots(problem.listings[j].node_free, int(s)) > 0 for j in lsts], bool) for s in sizes}
        ch = build_chains(arrays, reqs, lsts, fits, per_gpu=True)
        has_edge[ch.e_req] = True
        has_edge[ch.d_req] = True
        out.append(ch)
    return Graph(out, has_edge, sum(ch.pairs for ch in out))


def find_components(problem: Problem, arrays: Arrays, graph: Graph) -> list[Component]:
    """Connected components of the feasibility graph (plus voucher links) that have an edge.

    Requests with no feasible edge belong to no component: nothing can be placed for them.
    """
    n_req, n_lst = len(problem.requests), len(problem.listings)
    labels = _component_labels(problem, graph, n_req, n_lst)
    live = np.zeros(len(labels), dtype=bool)
    live[labels[np.flatnonzero(graph.has_edge)]] = True
    members = np.flatnonzero(live[labels[: n_req + n_lst]])  # requests and listings of live components
    order = members[np.argsort(labels[members], kind="stable")]
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    components = []
    for chunk in np.split(order, bounds) if len(order) else []:
        components.append(Component(requests=chunk[chunk < n_req], listings=chunk[chunk >= n_req] - n_req))
    components.sort(key=lambda s: (problem.requests[s.requests[0]].gpu_model, int(s.requests[0])))
    return components


def _component_labels(problem: Problem, graph: Graph, n_req: int, n_lst: int) -> NDArray[np.int32]:
    """Component label of every request, listing and chain node (chain nodes numbered last)."""
    tails, heads, base = [], [], n_req + n_lst
    for ch in graph.chains:
        tails += [ch.e_req, base + ch.links, base + ch.x_node, ch.d_req]
        heads += [base + ch.e_node, base + ch.links + 1, n_req + ch.x_lst, n_req + ch.d_lst]
        base += ch.n_nodes
    by_code: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(problem.requests):
        if r.voucher is not None:
            by_code.setdefault((r.gpu_model, r.voucher.code), []).append(i)
    for members in by_code.values():
        tails.append(np.array(members[:-1], dtype=np.int64))
        heads.append(np.array(members[1:], dtype=np.int64))
    t, h = np.concatenate([np.zeros(0, np.int64), *tails]), np.concatenate([np.zeros(0, np.int64), *heads])
    graph_ = coo_matrix((np.ones(len(t), dtype=np.int8), (t, h)), shape=(base, base))
    labels: NDArray[np.int32] = connected_components(graph_, directed=False)[1]
    return labels


def split(problem: Problem) -> list[Problem]:
    """Independent sub-Problems whose plans, taken together, are a plan for ``problem``.

    The last sub-Problem per GPU model (if any) holds the requests that have no feasible edge at
    all, together with every listing of that model as read-only context for their unserved reasons;
    it can never place anything, so sharing those listings with other components is safe.
    """
    arrays = build_arrays(problem)
    graph = feasibility(problem, arrays)
    subs = [_sub(problem, s.requests, s.listings) for s in find_components(problem, arrays, graph)]
    placeable = graph.has_edge
    for model in sorted({r.gpu_model for r in problem.requests}):
        stuck = [i for i, r in enumerate(problem.requests) if r.gpu_model == model and not placeable[i]]
        if stuck:
            context = [j for j, x in enumerate(problem.listings) if x.gpu_model == model]
            subs.append(_sub(problem, stuck, context))
    return subs


def _sub(problem: Problem, reqs: NDArray[np.int64] | Sequence[int], lsts: NDArray[np.int64] | Sequence[int]) -> Problem:
    return Problem(
        requests=tuple(problem.requests[int(i)] for i in reqs),
        listings=tuple(problem.listings[int(j)] for j in lsts),
        rtt_ms=problem.rtt_ms,
        now=problem.now,
        reservations=problem.reservations,
    )
