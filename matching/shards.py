"""Split a round into independent shards that can be solved apart (e.g. as separate Celery tasks).

Two requests are in one shard when a chain of feasible edges joins them (which keeps each shard to
one GPU model, since edges never cross models) or when they want the same GPU model and carry the
same voucher code (its budget is shared, so they are best capped together). Listings follow their
requests. Shards are ordered by (GPU model, smallest request index): deterministic.

A voucher used for several GPU models can still span shards: :func:`matching.solver.solve` caps
budgets over the whole round, and when shards are solved apart the service applying the plans must
re-check each voucher's remaining value (it has to under row locks anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from matching.edges import Arrays, Edges, build_arrays, build_edges
from matching.problem import Problem


@dataclass
class Shard:
    """One independent part of a round: global request/listing indices and its edge indices."""

    requests: np.ndarray
    listings: np.ndarray
    edges: np.ndarray


def find_shards(problem: Problem, arrays: Arrays, edges: Edges) -> list[Shard]:
    """Connected components of the feasibility graph (plus voucher links) that have an edge.

    Requests with no feasible edge belong to no shard: nothing can be placed for them.
    """
    n_req, n_lst = len(problem.requests), len(problem.listings)
    labels = _component_labels(problem, edges, n_req, n_lst)
    edge_label = labels[edges.req]
    order = np.argsort(edge_label, kind="stable")
    bounds = np.flatnonzero(np.diff(edge_label[order])) + 1
    shards = []
    for chunk in np.split(order, bounds) if len(order) else []:
        label = edge_label[chunk[0]]
        reqs = np.flatnonzero(labels[:n_req] == label)
        lsts = np.flatnonzero(labels[n_req:] == label)
        shards.append(Shard(requests=reqs, listings=lsts, edges=chunk))
    shards.sort(key=lambda s: (problem.requests[s.requests[0]].gpu_model, int(s.requests[0])))
    return shards


def _component_labels(problem: Problem, edges: Edges, n_req: int, n_lst: int) -> np.ndarray:
    tails, heads = [edges.req], [edges.lst + n_req]
    by_code: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(problem.requests):
        if r.voucher is not None:
            by_code.setdefault((r.gpu_model, r.voucher.code), []).append(i)
    for members in by_code.values():
        tails.append(np.array(members[:-1], dtype=np.int64))
        heads.append(np.array(members[1:], dtype=np.int64))
    t, h = np.concatenate(tails), np.concatenate(heads)
    n = n_req + n_lst
    graph = coo_matrix((np.ones(len(t), dtype=np.int8), (t, h)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def split(problem: Problem) -> list[Problem]:
    """Independent sub-Problems whose plans, taken together, are a plan for ``problem``.

    The last sub-Problem per GPU model (if any) holds the requests that have no feasible edge at
    all, together with every listing of that model as read-only context for their unserved reasons;
    it can never place anything, so sharing those listings with other shards is safe.
    """
    arrays = build_arrays(problem)
    edges = build_edges(problem, arrays)
    subs = [_sub(problem, s.requests, s.listings) for s in find_shards(problem, arrays, edges)]
    placeable = np.zeros(len(problem.requests), dtype=bool)
    placeable[edges.req] = True
    for model in sorted({r.gpu_model for r in problem.requests}):
        stuck = [i for i, r in enumerate(problem.requests) if r.gpu_model == model and not placeable[i]]
        if stuck:
            context = [j for j, x in enumerate(problem.listings) if x.gpu_model == model]
            subs.append(_sub(problem, stuck, context))
    return subs


def _sub(problem: Problem, reqs, lsts) -> Problem:
    return Problem(
        requests=tuple(problem.requests[int(i)] for i in reqs),
        listings=tuple(problem.listings[int(j)] for j in lsts),
        rtt_ms=problem.rtt_ms,
        now=problem.now,
    )
