"""One bad row cannot stop a round: the rows that make planning raise are found and left out."""

from __future__ import annotations

import pytest

from matching.quarantine import MAX_ATTEMPTS, minimal_failing, plan_quarantined, rows_to_leave_out
from matching.solver import solve
from tests.matching.builders import lst, problem, req


def poisoned(*, requests=(), listings=(), together=()):
    """The engine, raising when a poisoned request or listing is in the problem, or when a poisoned
    (request, listing) pair both are."""

    def plan_of(p):
        request_ids = {r.id for r in p.requests}
        listing_ids = {x.id for x in p.listings}
        if request_ids & set(requests) or listing_ids & set(listings):
            raise OverflowError("date value out of range")
        if any(r in request_ids and x in listing_ids for r, x in together):
            raise ValueError("this pair")
        return solve(p)

    return plan_of


def market(n_requests=20, n_listings=6):
    return problem(
        [req(i, bound=None, replicas=1) for i in range(1, n_requests + 1)],
        [lst(j, nodes=(8, 8)) for j in range(1, n_listings + 1)],
    )


def test_a_round_without_bad_rows_searches_nothing():
    calls = []

    def plan_of(p):
        calls.append(p)
        return solve(p)

    plan, left_out = plan_quarantined(plan_of, market())
    assert (left_out, len(calls)) == ([], 1)
    assert plan.served_replicas == 20


@pytest.mark.parametrize(("bad", "kind"), [({"requests": (7,)}, "request"), ({"listings": (3,)}, "listing")])
def test_one_bad_row_is_left_out_and_the_rest_is_planned(bad, kind):
    plan, left_out = plan_quarantined(poisoned(**bad), market())
    (row,) = left_out
    assert (row.kind, row.id) == (kind, next(iter(bad.values()))[0])
    assert "OverflowError('date value out of range')" in row.reason
    assert plan.served_replicas == (19 if kind == "request" else 20)


def test_a_request_that_fails_only_beside_one_listing_costs_only_itself():
    plan, left_out = plan_quarantined(poisoned(together=[(5, 2)]), market())
    assert [(row.kind, row.id) for row in left_out] == [("request", 5)]
    assert plan.served_replicas == 19


def test_several_bad_rows_are_all_left_out():
    plan, left_out = plan_quarantined(poisoned(requests=(2, 19), listings=(6,)), market())
    assert sorted((row.kind, row.id) for row in left_out) == [("listing", 6), ("request", 2), ("request", 19)]
    assert plan.served_replicas == 18


def test_a_failure_that_is_no_rows_fault_fails_the_round_with_its_own_error():
    def broken(p):
        raise RuntimeError("solver broken")

    with pytest.raises(RuntimeError, match="solver broken"):
        plan_quarantined(broken, market())


def test_errors_about_the_process_are_raised_at_once():
    class TimeLimit(Exception):
        pass

    calls = []

    def out_of_time(p):
        calls.append(p)
        raise TimeLimit

    with pytest.raises(TimeLimit):
        plan_quarantined(out_of_time, market(), passthrough=(TimeLimit,))
    assert len(calls) == 1


def test_the_search_is_cheap_and_bounded():
    attempts = []

    def fails(indices):
        attempts.append(len(indices))
        return ValueError() if 4_321 in indices else None

    assert rows_to_leave_out(10_000, fails).keys() == {4_321}
    assert len(attempts) <= 40  # about 2 · log2(10 000) + a few
    assert 4 * len(attempts) <= MAX_ATTEMPTS


def test_the_minimal_failing_set_keeps_only_what_the_failure_needs():
    def fails(items):
        return ValueError() if {3, 8} <= set(items) else None

    assert sorted(minimal_failing(list(range(10)), fails)) == [3, 8]
