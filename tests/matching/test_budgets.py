"""Binding voucher budgets: the solver re-plans without the subsidy and bounds the capped cost."""

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matching.graph import chains
from matching.graph.edges import build_arrays, price_pairs
from matching.packing import budgets, transport
from matching.problem import VoucherTerms
from matching.solver import solve
from tests.matching.builders import lst, problem, req


def voucher(remaining: str, regions=()) -> VoucherTerms:
    return VoucherTerms(code="V", percent=Decimal(30), remaining_value=Decimal(remaining), eligible_regions=regions)


def test_a_nearly_spent_voucher_no_longer_pulls_work_to_its_dearer_listing():
    # Full subsidy makes yrd look like 7 CNY vs guian's 8, but only 0.50 CNY of budget is left.
    p = problem(
        [req(bound=60.0, voucher=voucher("0.5", regions=("yrd",)))],
        [lst(1, region="yrd", price="10"), lst(2, region="guian", price="8")],
    )
    plan = solve(p)
    assert [(a.listing_id, a.subsidy_per_gpu_hour) for a in plan.assignments] == [(2, Decimal("0.0000"))]
    assert plan.objective == Decimal("192.0000")
    assert plan.lower_bound == Decimal("191.5000")  # 192 without subsidy − the 0.50 that is left
    assert plan.stats["budget_replan"] == "cheaper"


def test_a_budget_that_still_binds_after_replanning_proves_the_plan_optimal():
    p = problem([req(bound=60.0, voucher=voucher("12"))], [lst(1, region="yrd", price="10")])
    plan = solve(p)
    assert plan.objective == Decimal("228.0000")  # 240 − the 12 CNY the voucher has left
    assert plan.lower_bound == plan.objective
    assert plan.gap == 0.0


# --- the warm re-plan: exact whichever way voucher requests are laid out -------------------------


@st.composite
def voucher_components(draw):
    """A one-size component with requests holding one of two vouchers, and the codes to strip."""
    percent = st.sampled_from([20, 30])
    codes = [VoucherTerms(code=c, percent=Decimal(draw(percent)), remaining_value=Decimal(1)) for c in "AB"]
    requests = [
        req(
            i + 1,
            replicas=draw(st.integers(1, 4)),
            bound=draw(st.sampled_from([10.0, 30.0, None])),
            cap=str(draw(st.integers(6, 14))),
            hours=draw(st.sampled_from([1, 24])),
            weight=draw(st.sampled_from(["0", "0.05"])),
            priority=draw(st.integers(0, 1)),
            voucher=draw(st.sampled_from([None, *codes])),
        )
        for i in range(draw(st.integers(1, 7)))
    ]
    listings = [
        lst(
            j + 1,
            region=draw(st.sampled_from(["yrd", "guian", "ningxia-zhongwei"])),
            price=str(draw(st.integers(5, 13))),
            nodes=tuple(draw(st.lists(st.integers(0, 8), min_size=1, max_size=2))),
        )
        for j in range(draw(st.integers(1, 5)))
    ]
    return problem(requests, listings), frozenset(draw(st.sets(st.sampled_from(["A", "B"]))))


#: (VOUCHER_DIRECT_PAIRS, DIRECT_RATIO): voucher requests on direct arcs; shadows with every class on
#: chains (penalties alone re-price); shadows with the small classes direct (both ways at once).
LAYOUTS = {"direct": (10**9, 32), "shadow chains": (-1, -1), "shadow mixed": (-1, 32)}


@pytest.mark.parametrize("layout", LAYOUTS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=voucher_components())
def test_a_restarted_replan_equals_a_fresh_solve_without_the_stripped_subsidies(monkeypatch, layout, case):
    p, codes = case
    monkeypatch.setattr(transport, "VOUCHER_DIRECT_PAIRS", LAYOUTS[layout][0])
    monkeypatch.setattr(chains, "DIRECT_RATIO", LAYOUTS[layout][1])
    arrays = build_arrays(p)
    everyone = np.arange(len(p.requests))
    demand = {int(i): int(arrays.request_replicas[i]) for i in everyone}
    listings = np.arange(len(p.listings))
    _, first = transport.transport(arrays, demand, listings, transport.NodePool(p), 1)
    stripped = budgets.without_subsidy(p, arrays, codes)
    counts, again = transport.retransport(stripped, first)
    _, fresh = transport.transport(stripped, demand, listings, transport.NodePool(p), 1)
    assert again.result.cost == fresh.result.cost
    assert again.result.served.tolist() == fresh.result.served.tolist()
    # The replicas it places cost exactly that, priced without the stripped subsidies.
    priced = price_pairs(stripped, [i for i, _ in counts], [j for _, j in counts]).cost
    hours = [int(arrays.request_duration_hours[i]) for i, _ in counts]
    assert sum(c * n * h for c, n, h in zip(priced, counts.values(), hours, strict=True)) == fresh.result.cost
