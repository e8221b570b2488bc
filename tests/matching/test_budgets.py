"""Binding voucher budgets: the solver re-plans without the subsidy and bounds the capped cost."""

from decimal import Decimal

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
