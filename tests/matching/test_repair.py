"""The class dive for mixed replica sizes (:mod:`matching.packing.repair`), with the exact MILP path switched off."""

from decimal import Decimal
from unittest import mock

import numpy as np
from hypothesis import given

from matching.graph.edges import build_arrays
from matching.greedy import greedy
from matching.packing import exact
from matching.packing.transport import NodePool, transport
from matching.solver import solve
from tests.matching.builders import lst, problem, req
from tests.matching.test_properties import FAST, check_valid, problems, served_by_priority


def no_milp():
    """Send every mixed component down the relaxation + class dive path (the MILP takes no component)."""
    return mock.patch.object(exact, "MAX_PAIRS", 0)


def test_transport_caps_bound_each_listing_and_omitted_listings_get_nothing():
    p = problem([req(1, replicas=5, bound=60.0)], [lst(1, nodes=(4,)), lst(2, region="guian", nodes=(4,))])
    a = build_arrays(p)
    counts, _ = transport(a, {0: 5}, np.array([0, 1]), NodePool(p), 1, caps={0: 1})
    assert counts == {(0, 0): 1}


def test_the_dive_gives_the_whole_cheap_node_to_the_long_job_and_the_short_one_the_dear_node():
    # 16 GPUs for 24 wanted: serve the 1-h 8-GPU job and the 24-h pair of 4-GPU replicas, not the
    # 100-h 1-GPU job. Cheapest: the 24-h work on the 7 CNY node (1344), the 1-h job on the
    # 10 CNY node (80); the other way round costs 56 + 1920.
    p = problem(
        [
            req(1, size=8, replicas=1, hours=1, bound=60.0),
            req(2, size=4, replicas=2, hours=24, bound=60.0),
            req(3, size=1, replicas=8, hours=100, bound=60.0),
        ],
        [lst(1, region="yrd", price="7", nodes=(8,)), lst(2, region="yrd", price="10", nodes=(8,))],
    )
    with no_milp():
        plan = solve(p)
    assert {(x.request_id, x.listing_id): x.replicas for x in plan.assignments} == {(2, 1): 2, (1, 2): 1}
    assert plan.objective == Decimal("1424")
    assert plan.gap == 0.0  # the relaxation cannot do better either
    assert plan.stats["class_dive"] == 1
    assert plan.stats["rounding"] == plan.stats["greedy_won"] == 0


@FAST
@given(problems(uniform=False))
def test_dive_plans_are_valid_bounded_and_serve_at_least_greedy_by_priority(p):
    with no_milp():
        plan = solve(p)
    check_valid(p, plan)
    assert plan.stats["exact_components"] == 0
    dive, rounding, greedy_won = (plan.stats[k] for k in ("class_dive", "rounding", "greedy_won"))
    assert dive + rounding + greedy_won == plan.stats["mixed_components"]
    assert served_by_priority(p, plan) >= served_by_priority(p, greedy(p))
