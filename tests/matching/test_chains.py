"""The compressed graph stands for exactly the direct edges, and solving on it stays exact."""

from decimal import Decimal
from unittest import mock

import numpy as np
from hypothesis import given

from matching.graph import chains
from matching.graph.edges import build_arrays, build_edges, slots
from matching.greedy import greedy
from matching.solver import solve
from tests.matching.test_properties import FAST, check_valid, exact_objective, problems


def expand(ch: chains.Chains) -> dict[tuple[int, int], int]:
    """(request, listing) → cost per unit, by walking every entry down its chain."""
    nxt = {int(p): int(p) + 1 for p in ch.links}
    out = {}
    for r, node, cost in zip(ch.e_req.tolist(), ch.e_node.tolist(), ch.e_cost.tolist(), strict=True):
        while node is not None:
            key = (r, int(ch.x_lst[node]))
            assert key not in out
            out[key] = cost + int(ch.x_cost[node])
            node = nxt.get(node)
    for r, j, cost in zip(ch.d_req.tolist(), ch.d_lst.tolist(), ch.d_cost.tolist(), strict=True):
        assert (r, j) not in out
        out[r, j] = cost
    return out


def chain_pairs(p, ratio: int, budget: int) -> tuple[dict, int]:
    a = build_arrays(p)
    out, pairs = {}, 0
    with mock.patch.object(chains, "DIRECT_RATIO", ratio):
        for model in np.unique(a.request_model):
            reqs, lsts = np.flatnonzero(a.request_model == model), np.flatnonzero(a.listing_model == model)
            sizes = {int(s) for s in a.request_size[reqs]}
            fits = {s: np.array([slots(p.listings[j].node_free, s) > 0 for j in lsts], bool) for s in sizes}
            ch = chains.build_chains(a, reqs, lsts, fits, per_gpu=True, budget=budget)
            out.update(expand(ch))
            pairs += ch.pairs
    return out, pairs


@FAST
@given(problems(uniform=False))
def test_chains_reach_exactly_the_feasible_edges_at_their_costs(p):
    a = build_arrays(p)
    edges = build_edges(p, a)
    want = {
        (int(i), int(j)): int(c) * int(a.request_duration_hours[i])
        for i, j, c in zip(edges.req, edges.lst, edges.cost, strict=True)
    }
    for ratio, budget in ((0, 0), (10**9, 0), (0, 10**9)):
        got, pairs = chain_pairs(p, ratio, budget)
        assert got == want
        assert pairs == len(edges)


@FAST
@given(problems(uniform=True))
def test_uniform_plans_on_pure_chains_match_an_independent_exact_solve(p):
    with mock.patch.object(chains, "DIRECT_RATIO", 0):
        plan = solve(p)
    check_valid(p, plan)
    assert plan.served_replicas >= greedy(p).served_replicas
    assert plan.gap == 0.0
    assert abs(plan.objective - exact_objective(p)) <= Decimal("1e-9")


@FAST
@given(problems(uniform=False))
def test_mixed_plans_on_pure_chains_are_valid_and_bounded(p):
    with mock.patch.object(chains, "DIRECT_RATIO", 0):
        plan = solve(p)
    check_valid(p, plan)
