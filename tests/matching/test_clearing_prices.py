"""Clearing prices (matching.prices): hand-checked cases and exact finite differences."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal

import pytest

from matching.prices import by_region, clearing_prices, surplus, with_prices
from matching.solver import solve
from tests.matching.builders import problem, req

from .builders import lst


def _priced(p):
    return {x.listing_id: x for x in clearing_prices(p, solve(p))}


def test_saturated_cheap_near_listing_is_worth_what_one_more_gpu_hour_saves():
    # Three 1-GPU requests from Shanghai; the near hub has 2 GPUs at 6, the far hub plenty at 8.
    p = problem(
        [req(1), req(2), req(3)],
        [lst(1, region="yrd", nodes=(2,), price="6"), lst(2, region="guian", nodes=(8,), price="8")],
    )
    prices = _priced(p)
    # One more GPU at yrd moves the third request from 8 to 6: 2 CNY per GPU-hour saved.
    assert prices[1].rent == Decimal("2.0000")
    assert prices[1].clearing_price == Decimal("8.0000")
    assert prices[1].free_gpus == 0
    # The far hub has 7 GPUs left over: no rent, it clears at its ask.
    assert prices[2].rent == 0
    assert prices[2].clearing_price == Decimal("8")
    assert prices[2].free_gpus == 7


def test_a_listing_that_lets_one_more_request_be_served_is_worth_cap_minus_cost():
    # Only the near hub can serve (bound 10 ms); two requests with cap 20, one GPU at 6.
    p = problem([req(1, bound=10.0, cap="20"), req(2, bound=10.0, cap="15")], [lst(1, nodes=(1,), price="6")])
    prices = _priced(p)
    # The engine serves one; one more GPU serves the other, worth its cap minus its cost.
    served = solve(p).assignments[0].request_id
    other_cap = Decimal("15") if served == 1 else Decimal("20")
    assert prices[1].rent == other_cap - 6


def test_spare_capacity_and_unreachable_listings_have_no_rent():
    p = problem([req(1)], [lst(1, nodes=(8,), price="6"), lst(2, region="ningxia-zhongwei", price="3")])
    prices = _priced(p)
    assert prices[1].rent == 0
    assert prices[1].free_gpus == 7
    assert prices[2].rent == 0
    assert prices[2].unit_gpus == 0


def test_unpriced_beyond_the_resolve_budget_is_none_not_a_guess():
    p = problem([req(1), req(2)], [lst(1, nodes=(1,), price="6"), lst(2, region="guian", nodes=(1,), price="7")])
    prices = {x.listing_id: x for x in clearing_prices(p, solve(p), max_resolves=1)}
    assert prices[1].rent is not None
    assert prices[2].rent is None
    assert prices[2].clearing_price is None


def test_with_prices_fills_the_plan_and_by_region_aggregates():
    p = problem(
        [req(1), req(2), req(3)],
        [
            lst(1, region="yrd", nodes=(1,), price="6"),
            lst(2, region="yrd", nodes=(1,), price="7"),
            lst(3, region="guian", nodes=(8,), price="8"),
        ],
    )
    plan = with_prices(p, solve(p))
    assert len(plan.prices) == 3
    regions = {r.region: r for r in by_region(plan.prices)}
    # yrd: 6 + 2 and 7 + 1 both clear at 8; guian spare at 8.
    assert regions["yrd"].price == Decimal("8")
    assert regions["yrd"].rent == Decimal("2")
    assert regions["yrd"].saturated == 2
    assert regions["yrd"].free_gpus == 0
    assert regions["guian"].price == Decimal("8")
    assert regions["guian"].rent == 0


def _random_problem(rng: random.Random, sizes=(1,)):
    regions = ["shanghai", "yrd", "guian", "ningxia-zhongwei"]
    requests = [
        req(
            i,
            size=rng.choice(sizes),
            replicas=rng.randint(1, 3),
            bound=rng.choice([5.0, 30.0, 40.0, None]),
            cap=str(rng.randint(8, 20)),
            hours=rng.choice([1, 4, 24]),
            weight=rng.choice(["0", "0.02", "0.05"]),
        )
        for i in range(1, rng.randint(3, 9))
    ]
    listings = [
        lst(
            j,
            region=rng.choice(regions),
            gpn=4,
            nodes=tuple(rng.randint(0, 4) for _ in range(rng.randint(1, 2))),
            price=str(rng.randint(3, 9)),
        )
        for j in range(1, rng.randint(2, 6))
    ]
    return problem(requests, listings)


@pytest.mark.parametrize("seed", range(25))
def test_rent_equals_the_finite_difference_of_the_whole_round(seed):
    """One more unit on a listing changes the whole round's optimum (solved afresh, every component)
    by its rent × the GPU-hours it sells in addition; on a spare listing, by nothing."""
    rng = random.Random(seed)
    p = _random_problem(rng)
    plan = solve(p)
    base = surplus(p, plan)
    for price in clearing_prices(p, plan, max_resolves=100):
        if price.unit_gpus == 0:
            continue
        more = replace(
            p,
            listings=tuple(
                replace(x, node_free=(*x.node_free, price.unit_gpus)) if x.id == price.listing_id else x
                for x in p.listings
            ),
        )
        more_plan = solve(more)
        gained = surplus(more, more_plan) - base
        sold = sum(
            a.gpus * next(r.duration_hours for r in p.requests if r.id == a.request_id)
            for a in more_plan.assignments
            if a.listing_id == price.listing_id
        ) - sum(
            a.gpus * next(r.duration_hours for r in p.requests if r.id == a.request_id)
            for a in plan.assignments
            if a.listing_id == price.listing_id
        )
        assert price.rent is not None
        if price.rent == 0:
            assert gained <= 0 or sold <= 0, (seed, price)
        else:
            assert abs(price.rent * sold - gained) <= Decimal("0.0001") * sold, (seed, price, gained, sold)
            assert more_plan.served_replicas >= plan.served_replicas


@pytest.mark.parametrize("seed", range(10))
def test_mixed_sizes_price_every_listing_without_breaking_the_plan(seed):
    rng = random.Random(100 + seed)
    p = _random_problem(rng, sizes=(1, 2))
    plan = solve(p)
    priced = with_prices(p, plan)
    assert priced.assignments == plan.assignments
    for price in priced.prices:
        assert price.rent is not None
        assert price.rent >= 0
        if price.free_gpus and price.unit_gpus and price.unit_gpus <= 1:
            assert price.rent == 0


def test_the_worked_example_of_docs_economics():
    """docs/economics.md's example: the near hub's rent is the unserved realtime request's cap − cost."""
    from matching import costs
    from matching.latency import LatencyClass, bound_of
    from matching.problem import Problem

    near, west = "yrd-qingpu-wujiang-jiashan", "ningxia-zhongwei"
    rtt = {("shanghai", near): 2.8, ("shanghai", west): 35.8, (near, near): 1.0, (west, west): 1.0}

    def request(i, cls, n, cap):
        r = req(i, replicas=n, cap=cap, bound=bound_of(cls))
        return replace(r, latency_weight=costs.default_latency_weight(cls))

    p = Problem(
        requests=(
            request(1, LatencyClass.INTERACTIVE, 8, "9.00"),
            request(2, LatencyClass.STANDARD, 6, "8.00"),
            request(3, LatencyClass.REALTIME, 2, "10.00"),
        ),
        listings=(lst(1, region=near, nodes=(8,), price="6.50"), lst(2, region=west, nodes=(8, 8), price="5.20")),
        rtt_ms=rtt,
        now=problem([], []).now,
    )
    plan = solve(p)
    assert plan.objective == Decimal("2033.3280")
    assert surplus(p, plan) == Decimal("846.6720")
    regions = {r.region: r for r in by_region(clearing_prices(p, plan))}
    assert (regions[near].rent, regions[near].price) == (Decimal("3.3600"), Decimal("9.8600"))
    assert (regions[west].rent, regions[west].price, regions[west].free_gpus) == (0, Decimal("5.20"), 10)


def test_a_spent_time_budget_leaves_full_listings_unavailable():
    p = problem([req(1), req(2)], [lst(1, nodes=(1,), price="6"), lst(2, region="guian", nodes=(1,), price="7")])
    prices = clearing_prices(p, solve(p), budget_seconds=-1.0)
    assert [x.rent for x in prices] == [None, None]
