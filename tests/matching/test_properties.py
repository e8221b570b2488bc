"""Property tests: every plan is valid, never worse than greedy, and exact for one replica size."""

from collections import defaultdict
from decimal import Decimal

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import Bounds, LinearConstraint, milp

from matching import costs
from matching.greedy import greedy
from matching.problem import VoucherTerms
from matching.solver import solve
from tests.matching.builders import lst, problem, req

REGIONS = ["yrd", "ningxia-zhongwei", "guian"]
BOUNDS = [10.0, 30.0, 60.0, None]
#: Reliability scores of listings (None: too little history) and requests' bounds (None: none).
SCORES = [None, 0.95, 0.99, 1.0]
MINIMA = [None, None, 0.0, 0.99]


@st.composite
def problems(draw, uniform: bool):
    n_req, n_lst = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    sizes = [draw(st.sampled_from([1, 2, 4, 8]))] if uniform else [1, 2, 4, 8]
    voucher = VoucherTerms(code="V", percent=Decimal(30), remaining_value=Decimal(draw(st.integers(0, 400))))
    requests = [
        req(
            i + 1,
            size=draw(st.sampled_from(sizes)),
            replicas=draw(st.integers(1, 4)),
            bound=draw(st.sampled_from(BOUNDS)),
            cap=str(draw(st.integers(5, 14))),
            hours=draw(st.sampled_from([1, 24, 200])),
            weight=draw(st.sampled_from(["0", "0.02"])),
            priority=draw(st.integers(0, 1)),
            voucher=voucher if not uniform and draw(st.booleans()) else None,
            min_reliability=draw(st.sampled_from(MINIMA)),
        )
        for i in range(n_req)
    ]
    listings = [
        lst(
            j + 1,
            region=draw(st.sampled_from(REGIONS)),
            price=str(draw(st.integers(5, 13))),
            nodes=tuple(draw(st.lists(st.integers(0, 8), min_size=1, max_size=3))),
            days=draw(st.sampled_from([1, 30])),
            reliability=draw(st.sampled_from(SCORES)),
        )
        for j in range(n_lst)
    ]
    return problem(requests, listings)


def check_valid(p, plan):
    by_req, by_lst = {r.id: r for r in p.requests}, {x.id: x for x in p.listings}
    used = defaultdict(int)
    served = defaultdict(int)
    for a in plan.assignments:
        r, x = by_req[a.request_id], by_lst[a.listing_id]
        rtt = costs.rtt_between(p.rtt_ms, r.origin, x.region)
        assert costs.infeasibility(r, x, rtt, p.now) is None
        assert len(a.nodes) == a.replicas
        for node in a.nodes:
            used[x.id, node] += r.gpus_per_replica
        served[r.id] += a.replicas
    for (lid, node), gpus in used.items():
        assert gpus <= by_lst[lid].node_free[node]
    for rid, n in served.items():
        assert n <= by_req[rid].replicas
    assert plan.lower_bound <= plan.objective


def served_by_priority(p, plan):
    prio = {r.id: r.priority for r in p.requests}
    levels = sorted({r.priority for r in p.requests}, reverse=True)
    gpus = defaultdict(int)
    for a in plan.assignments:
        gpus[prio[a.request_id]] += a.gpus
    return tuple(gpus[q] for q in levels)


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(problems(uniform=False))
def test_every_plan_respects_capacity_bounds_caps_windows_and_budgets(p):
    plan = solve(p)
    check_valid(p, plan)
    paid = sum(
        a.subsidy_per_gpu_hour * a.gpus * next(r.duration_hours for r in p.requests if r.id == a.request_id)
        for a in plan.assignments
    )
    budgets = {r.voucher.remaining_value for r in p.requests if r.voucher}
    assert paid <= (min(budgets) if budgets else 0)


@FAST
@given(problems(uniform=False))
def test_solver_never_serves_less_than_greedy_by_priority(p):
    ours, base = solve(p), greedy(p)
    check_valid(p, base)
    assert served_by_priority(p, ours) >= served_by_priority(p, base)


@FAST
@given(problems(uniform=True))
def test_uniform_sizes_serve_at_least_greedys_replicas_and_match_an_independent_exact_solve(p):
    plan = solve(p)
    check_valid(p, plan)
    assert plan.served_replicas >= greedy(p).served_replicas
    assert plan.gap == 0.0
    assert abs(plan.objective - exact_objective(p)) <= Decimal("1e-9")


def exact_objective(p, premium=None) -> Decimal:
    """Lexicographic (served per priority, then cost) integer optimum by scipy's HiGHS MILP.

    ``premium(i, j)``, when given, is added to each feasible edge's cost per GPU-hour.
    """
    edges = []
    for i, r in enumerate(p.requests):
        for j, x in enumerate(p.listings):
            rtt = costs.rtt_between(p.rtt_ms, r.origin, x.region)
            if costs.infeasibility(r, x, rtt, p.now) is None:
                per_gpu_hour = costs.edge_cost(r, x, rtt).cost + (premium(i, j) if premium else 0)
                edges.append((i, j, per_gpu_hour * r.gpus_per_replica * r.duration_hours))
    if not edges:
        return Decimal(0)
    n = len(edges)
    rows = [[1.0 if e[0] == i else 0.0 for e in edges] for i in range(len(p.requests))]
    rows += [[1.0 if e[1] == j else 0.0 for e in edges] for j in range(len(p.listings))]
    ub = [r.replicas for r in p.requests] + [costs.slots_on(x, p.requests[0].gpus_per_replica) for x in p.listings]
    cons = [LinearConstraint(np.array(rows), -np.inf, np.array(ub, dtype=float))]
    for q in sorted({r.priority for r in p.requests}, reverse=True):
        mask = np.array([1.0 if p.requests[e[0]].priority == q else 0.0 for e in edges])
        res = milp(-mask, constraints=cons, integrality=np.ones(n), bounds=Bounds(0, np.inf))
        cons.append(LinearConstraint(mask, -res.fun - 0.5, np.inf))
    cost = np.array([float(c) for _, _, c in edges])
    res = milp(cost, constraints=cons, integrality=np.ones(n), bounds=Bounds(0, np.inf))
    return sum((c * round(v) for (_, _, c), v in zip(edges, res.x, strict=True)), Decimal(0))
