"""The explanation's fast feasibility checks give exactly the words of :func:`matching.costs.infeasibility`."""

from datetime import timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from matching import costs
from matching.explain import ExplainIndex
from matching.graph.edges import build_arrays
from matching.problem import VoucherTerms
from matching.solver import solve
from tests.matching.builders import NOW, lst, problem, req
from tests.matching.test_properties import FAST

REGIONS = ["shanghai", "yrd", "ningxia-zhongwei", "guian"]


@st.composite
def varied(draw):
    """Problems that hit every rule: node size, RTT bound, price cap, window, no free node."""
    requests = [
        req(
            i + 1,
            size=draw(st.sampled_from([1, 2, 4, 8])),
            bound=draw(st.sampled_from([10.0, 30.0, 60.0, None])),
            cap=draw(st.sampled_from(["6", "9.5", "12", "12.345"])),
            hours=draw(st.sampled_from([1, 24, 200])),
            start_by=NOW + timedelta(hours=draw(st.sampled_from([0, 2, 48]))),
        )
        for i in range(draw(st.integers(1, 4)))
    ]
    listings = [
        lst(
            j + 1,
            region=draw(st.sampled_from(REGIONS)),
            gpn=draw(st.sampled_from([2, 4, 8])),
            nodes=tuple(draw(st.lists(st.integers(0, 2), min_size=1, max_size=2))),
            price=draw(st.sampled_from(["7", "9.99", "12.345", "14"])),
            opens=NOW + timedelta(hours=draw(st.sampled_from([-1, 1, 24]))),
            days=draw(st.sampled_from([1, 30])),
        )
        for j in range(draw(st.integers(1, 4)))
    ]
    return problem(requests, listings)


@FAST
@given(varied())
def test_fast_reasons_match_the_scalar_rules(p):
    index = ExplainIndex(p, build_arrays(p))
    for i, r in enumerate(p.requests):
        for j, x in enumerate(p.listings):
            rtt = index.rtt(i, j)
            want = costs.infeasibility(r, x, rtt, p.now)
            assert index._quick_feasible(i, j, rtt) == (want is None)
            if want is not None:
                assert index._infeasible(i, j, rtt) == want


def test_a_voucher_budget_that_does_not_bind_needs_no_replan_and_the_plan_is_exact():
    roomy = VoucherTerms(code="V", percent=Decimal(30), remaining_value=Decimal("1000"))
    p = problem([req(bound=60.0, voucher=roomy)], [lst(1, region="yrd", price="10"), lst(2, region="guian", price="8")])
    plan = solve(p)
    assert plan.stats["budget_replan"] == ""  # nothing bound: one flow pass
    assert [(a.listing_id, a.subsidy_per_gpu_hour) for a in plan.assignments] == [(2, Decimal("2.4000"))]
    assert plan.objective == plan.lower_bound == Decimal("134.4000")  # (8 − 2.40) × 24 h
    assert plan.gap == 0.0
