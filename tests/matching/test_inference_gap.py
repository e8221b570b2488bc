"""bench/inference_gap.py: the bounds it sets beside the engine's are bounds, in the order the docs
(docs/inference.md, "Where the gap lies") read them in."""

from __future__ import annotations

from bench import inference_gap
from matching import costs
from matching import substitution_milp as milp
from matching.substitution_round import Round
from tests.matching.test_substitution import bench_round


def test_the_relaxations_order_and_the_covers_at_exact_prices_stay_below_the_optimum():
    problem = bench_round("100x50")
    got = inference_gap.measure(problem, milp_seconds=0)
    plan = float(got["plan"])
    # The plain LP splits replicas and serves small demands with fractions of one: far below.
    assert float(got["LP relaxation"]) < 0.7 * plan
    # The split LP is the best the engine's prices per listing can make their relaxation; its
    # steps reach part of it; the covers at its prices are the tightest of them all.
    assert float(got["LP relaxation"]) <= float(got["steps"]) <= float(got["split LP"]) + 0.01
    assert float(got["split LP"]) < float(got["covers at duals"]) <= plan
    # ...and still a bound: not above the exact optimum (HiGHS's MILP, 100 × 50 solved to optimality).
    _, info = milp.solve_milp(Round(problem, None), time_limit=120)
    assert info["status"] == "optimal"
    optimum = float(costs.from_units(round(float(info["cost_lower_bound_units"]))))
    assert float(got["covers at duals"]) <= optimum + 0.01
    assert float(got["engine bound"]) <= optimum + 0.01
