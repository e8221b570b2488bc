"""Small mixed-size components are solved exactly: checked against an independent node-level MILP."""

from dataclasses import replace
from decimal import Decimal

import numpy as np
from hypothesis import given
from scipy.optimize import Bounds, LinearConstraint, milp

from matching import costs
from matching.solver import solve
from tests.matching.test_properties import FAST, check_valid, problems


def node_level_optimum(p) -> Decimal:
    """Lexicographic optimum with one variable per (request, listing, node): no packing theory."""
    cols = []
    for i, r in enumerate(p.requests):
        for j, x in enumerate(p.listings):
            rtt = costs.rtt_between(p.rtt_ms, r.origin, x.region)
            if costs.infeasibility(r, x, rtt, p.now) is None:
                unit = costs.edge_cost(r, x, rtt).cost * r.gpus_per_replica * r.duration_hours
                cols += [(i, j, k, unit) for k in range(len(x.node_free))]
    if not cols:
        return Decimal(0)
    nodes = sorted({(j, k) for _, j, k, _ in cols})
    rows = [[1.0 if c[0] == i else 0.0 for c in cols] for i in range(len(p.requests))]
    rows += [[float(p.requests[c[0]].gpus_per_replica) if (c[1], c[2]) == n else 0.0 for c in cols] for n in nodes]
    ub = [r.replicas for r in p.requests] + [p.listings[j].node_free[k] for j, k in nodes]
    cons = [LinearConstraint(np.array(rows), -np.inf, np.array(ub, dtype=float))]
    integral, bounds = np.ones(len(cols)), Bounds(0, np.inf)
    for q in sorted({r.priority for r in p.requests}, reverse=True):
        mine = [p.requests[c[0]] for c in cols]
        gpus = np.array([float(r.gpus_per_replica) if r.priority == q else 0.0 for r in mine])
        res = milp(-gpus, constraints=cons, integrality=integral, bounds=bounds)
        cons.append(LinearConstraint(gpus, -res.fun - 0.5, np.inf))
    res = milp(np.array([float(c[3]) for c in cols]), constraints=cons, integrality=integral, bounds=bounds)
    return sum((c[3] * round(v) for c, v in zip(cols, res.x, strict=True)), Decimal(0))


@FAST
@given(problems(uniform=False))
def test_small_mixed_components_reach_the_node_level_optimum(p):
    p = replace(p, requests=tuple(replace(r, voucher=None) for r in p.requests))
    plan = solve(p)
    check_valid(p, plan)
    assert plan.stats["exact_components"] == plan.stats["mixed_components"]
    assert plan.gap == 0.0
    assert abs(plan.objective - node_level_optimum(p)) <= Decimal("1e-9")
