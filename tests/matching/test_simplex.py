"""The network simplex against OR-tools' cost scaling on random networks, and its restarts."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ortools.graph.python import min_cost_flow as ortools_mcf

from matching.flow import simplex


@st.composite
def networks(draw, min_cost: int = 0):
    """A random network with balanced supplies (feasible or not) and costs from ``min_cost``."""
    n = draw(st.integers(2, 9))
    m = draw(st.integers(0, 30))
    arc = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.integers(0, 6), st.integers(min_cost, 40))
    arcs = [a for a in draw(st.lists(arc, min_size=m, max_size=m)) if a[0] != a[1]]
    supplies = draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n))
    supplies[-1] -= sum(supplies)
    as_array = lambda k: np.array([a[k] for a in arcs], dtype=np.int64)  # noqa: E731
    return n, as_array(0), as_array(1), as_array(2), as_array(3), np.array(supplies, dtype=np.int64)


def ortools_optimum(n, tails, heads, caps, costs, supplies):
    """OR-tools' optimal cost, or None when the supplies cannot be met."""
    flow = ortools_mcf.SimpleMinCostFlow()
    for t, h, c, w in zip(tails, heads, caps, costs, strict=True):
        flow.add_arc_with_capacity_and_unit_cost(int(t), int(h), int(c), int(w))
    for u, s in enumerate(supplies):
        flow.set_node_supply(u, int(s))
    status = flow.solve()
    return flow.optimal_cost() if status == flow.OPTIMAL else None


def check_flow(n, tails, heads, caps, supplies, flows):
    assert np.all(flows >= 0)
    assert np.all(flows <= caps)
    balance = np.zeros(n, dtype=np.int64)
    np.add.at(balance, tails, flows)
    np.add.at(balance, heads, -flows)
    assert balance.tolist() == supplies.tolist()


@settings(max_examples=400, deadline=None)
@given(networks(min_cost=-15))
def test_it_finds_the_same_optimum_as_ortools(net):
    n, tails, heads, caps, costs, supplies = net
    expected = ortools_optimum(*net)
    if expected is None:
        with pytest.raises(simplex.InfeasibleFlow):
            simplex.min_cost_flow(*net)
        return
    flows, cost, _ = simplex.min_cost_flow(*net)
    check_flow(n, tails, heads, caps, supplies, flows)
    assert cost == expected == int(np.dot(flows, costs))


@settings(max_examples=300, deadline=None)
@given(networks(), st.data())
def test_a_restart_after_a_cost_change_matches_a_fresh_solve(net, data):
    n, tails, heads, caps, costs, supplies = net
    if ortools_optimum(*net) is None:
        return
    _, _, basis = simplex.min_cost_flow(*net)
    changed = np.array(data.draw(st.lists(st.integers(0, 60), min_size=len(costs), max_size=len(costs))))
    flows, cost, _ = simplex.reoptimize(basis, changed)
    check_flow(n, tails, heads, caps, supplies, flows)
    assert cost == ortools_optimum(n, tails, heads, caps, changed, supplies)


def test_a_restart_leaves_the_basis_it_started_from_unchanged():
    net = (3, np.array([0, 0, 1]), np.array([1, 2, 2]), np.array([5, 5, 5]), np.array([1, 5, 1]), np.array([4, 0, -4]))
    flows, cost, basis = simplex.min_cost_flow(*net)
    assert (flows.tolist(), cost) == ([4, 0, 4], 8)
    again, dearer, _ = simplex.reoptimize(basis, np.array([1, 1, 9]))
    assert (again.tolist(), dearer) == ([0, 4, 0], 4)
    assert simplex.reoptimize(basis, np.array([1, 5, 1]))[:2][1] == 8


def test_a_network_without_arcs_is_feasible_only_with_no_supplies():
    empty = np.zeros(0, dtype=np.int64)
    flows, cost, _ = simplex.min_cost_flow(2, empty, empty, empty, empty, np.array([0, 0]))
    assert (len(flows), cost) == (0, 0)
    with pytest.raises(simplex.InfeasibleFlow):
        simplex.min_cost_flow(2, empty, empty, empty, empty, np.array([1, -1]))
