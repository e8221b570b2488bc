"""The interruptible tier in the engine (matching.interruptible): hand-checked optima, no database."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from matching.interruptible import NO_TIER, with_tiers
from matching.policies import ENGINE, planner
from matching.problem import Problem, RunningInterruptible
from matching.solver import solve
from tests.matching.builders import NOW, RTT, lst, req

NOTICE_END = NOW + timedelta(minutes=10)


def problem(requests, listings, running=()) -> Problem:
    return Problem(
        requests=tuple(requests), listings=tuple(listings), rtt_ms=RTT, now=NOW, running_interruptible=tuple(running)
    )


def tiered(listing, floor):
    return replace(listing, interruptible_floor_price_per_gpu_hour=Decimal(floor))


def running(match_id, listing, *, nodes, price, size=1, notice_given=False) -> RunningInterruptible:
    return RunningInterruptible(
        match_id=match_id,
        listing=listing,
        gpus_per_replica=size,
        nodes=tuple(nodes),
        price_per_gpu_hour=Decimal(price),
        free_at=NOTICE_END,
        notice_given=notice_given,
    )


def interruptible(id, **kw):
    return replace(req(id, **kw), interruptible=True)


def test_without_the_tier_the_plan_is_the_engines_own():
    p = problem([req(1, replicas=3), req(2, replicas=2, cap="9")], [lst(1, nodes=(4,)), lst(2, nodes=(2,), price="8")])
    assert replace(planner(ENGINE)(p), timings_ms={}) == replace(solve(p), timings_ms={})


def test_an_interruptible_request_pays_the_floor_within_its_bid():
    p = problem([interruptible(1, cap="5")], [tiered(lst(1, price="10"), "4")])
    (a,) = with_tiers(p, solve).assignments
    assert a.price_per_gpu_hour == Decimal("4")  # the floor: below the bid of 5, not the list price 10


def test_an_interruptible_request_never_reaches_a_floor_above_its_bid_or_a_listing_without_the_tier():
    p = problem([interruptible(1, cap="3.99")], [tiered(lst(1, price="10"), "4"), lst(2, price="2")])
    plan = with_tiers(p, solve)
    assert plan.assignments == ()
    assert plan.unserved[0].request_id == 1


def test_interruptible_demand_is_served_only_after_on_demand_demand():
    # One 2-GPU node; an on-demand and an interruptible request each want 2 GPUs; the interruptible
    # one bids far more than the on-demand one may pay in total, and still yields.
    p = problem(
        [req(1, replicas=2, cap="10", priority=-5), interruptible(2, replicas=2, cap="20", priority=9)],
        [tiered(lst(1, nodes=(2,), price="10"), "3")],
    )
    plan = with_tiers(p, solve)
    assert [(a.request_id, a.replicas) for a in plan.assignments] == [(1, 2)]
    assert {u.request_id for u in plan.unserved} == {2}


def test_no_listing_with_the_tier_leaves_interruptible_demand_unserved_with_why():
    plan = with_tiers(problem([interruptible(1)], [lst(1)]), solve)
    assert plan.unserved[0].reason == NO_TIER


def test_free_capacity_is_used_before_any_pre_emption():
    listing = tiered(lst(1, nodes=(2, 0), gpn=2, price="10"), "3")
    p = problem([req(1, replicas=2)], [listing], [running(7, listing, nodes=[1, 1], price="3")])
    plan = with_tiers(p, solve)
    assert plan.preempted == ()
    assert [(a.listing_id, a.nodes) for a in plan.assignments] == [(1, (0, 0))]


def test_the_cheapest_interruptible_match_is_pre_empted_and_only_it():
    # A full 2-node listing: match 7 pays 3, match 8 pays 2 per GPU-hour; on-demand needs one node.
    listing = tiered(lst(1, nodes=(0, 0), gpn=2, price="10"), "2")
    p = problem(
        [req(1, size=2)],
        [listing],
        [running(7, listing, nodes=[0], size=2, price="3"), running(8, listing, nodes=[1], size=2, price="2")],
    )
    plan = with_tiers(p, solve)
    assert [(x.match_id, x.request_ids, x.free_at) for x in plan.preempted] == [(8, (1,), NOTICE_END)]
    assert plan.assignments == ()  # placed by the round after the notice ends
    (waiting,) = plan.unserved
    assert waiting.request_id == 1
    assert "match 8" in waiting.reason


def test_pre_emption_takes_as_few_matches_as_the_demand_needs():
    listing = tiered(lst(1, nodes=(0, 0, 0), gpn=1, price="10"), "2")
    matches = [running(k, listing, nodes=[k - 1], price="2") for k in (1, 2, 3)]
    plan = with_tiers(problem([req(1, replicas=2)], [listing], matches), solve)
    assert len(plan.preempted) == 2


def test_pre_emption_is_priced_so_a_dearer_free_listing_can_win():
    # Free GPUs at 12 beat pre-empting at 10 + 3 = 13; at 14 they do not.
    full = tiered(lst(1, nodes=(0,), gpn=1, price="10"), "3")
    match = running(7, full, nodes=[0], price="3")
    cheaper = with_tiers(problem([req(1)], [full, lst(2, price="12")], [match]), solve)
    dearer = with_tiers(problem([req(1)], [full, lst(2, price="14")], [match]), solve)
    assert cheaper.preempted == ()
    assert [a.listing_id for a in cheaper.assignments] == [2]
    assert [x.match_id for x in dearer.preempted] == [7]
    assert dearer.assignments == ()


def test_the_penalty_is_a_cost_not_a_price_so_a_cap_at_the_list_price_may_pre_empt():
    listing = tiered(lst(1, nodes=(0,), gpn=1, price="10"), "3")
    plan = with_tiers(problem([req(1, cap="10")], [listing], [running(7, listing, nodes=[0], price="3")]), solve)
    assert [x.match_id for x in plan.preempted] == [7]


def test_interruptible_demand_never_pre_empts():
    listing = tiered(lst(1, nodes=(0,), gpn=1, price="10"), "2")
    plan = with_tiers(
        problem([interruptible(1, cap="20")], [listing], [running(7, listing, nodes=[0], price="2")]), solve
    )
    assert plan.preempted == ()
    assert plan.assignments == ()


def test_a_match_serving_its_notice_is_not_pre_empted_again_and_its_gpus_are_used_first():
    listing = tiered(lst(1, nodes=(0, 0), gpn=1, price="10"), "2")
    matches = [running(7, listing, nodes=[0], price="2", notice_given=True), running(8, listing, nodes=[1], price="1")]
    plan = with_tiers(problem([req(1)], [listing], matches), solve)
    assert plan.preempted == ()
    assert "match 7" in plan.unserved[0].reason


def test_a_pre_emption_must_free_the_gpus_before_the_requests_start_by():
    listing = tiered(lst(1, nodes=(0,), gpn=1, price="10"), "2")
    late = replace(req(1), start_by=NOW + timedelta(minutes=5))  # the notice ends at 10 minutes
    plan = with_tiers(problem([late], [listing], [running(7, listing, nodes=[0], price="2")]), solve)
    assert plan.preempted == ()


def random_market(seed: int):
    """A seeded small market: tiered and plain listings, on-demand and interruptible requests, and
    running interruptible matches on full nodes of the tiered listings."""
    rng = random.Random(seed)
    listings, running_matches = [], []
    for j in range(1, 6):
        gpn = rng.choice((1, 2, 4))
        nodes = [rng.choice((0, gpn)) for _ in range(rng.randint(1, 3))]
        price = Decimal(rng.randint(4, 12))
        listing = lst(j, region=rng.choice(("yrd", "guian", "ningxia-zhongwei")), gpn=gpn, nodes=nodes, price=price)
        if rng.random() < 0.6:
            listing = tiered(listing, str(price * Decimal(rng.choice(("0.3", "0.5", "0.8")))))
            full = [k for k, free in enumerate(nodes) if free == 0]
            for k in full:
                running_matches.append(
                    running(100 + 10 * j + k, listing, nodes=[k], size=gpn, price=str(listing.price_per_gpu_hour / 3))
                )
        listings.append(listing)
    requests = []
    for i in range(1, 9):
        make = interruptible if rng.random() < 0.5 else req
        requests.append(
            make(i, size=rng.choice((1, 2)), replicas=rng.randint(1, 3), bound=None, cap=str(rng.randint(2, 14)))
        )
    return problem(requests, listings, running_matches)


@pytest.mark.parametrize("seed", range(25))
def test_on_random_markets_the_tiers_rules_hold(seed):
    p = random_market(seed)
    plan = with_tiers(p, solve)
    by_listing = {x.id: x for x in p.listings}
    by_request = {r.id: r for r in p.requests}
    running_ids = {m.match_id for m in p.running_interruptible}
    for a in plan.assignments:
        request, listing = by_request[a.request_id], by_listing[a.listing_id]
        if request.interruptible:
            floor = listing.interruptible_floor_price_per_gpu_hour
            assert floor is not None
            assert a.price_per_gpu_hour == floor <= request.max_price_per_gpu_hour
        else:
            assert a.price_per_gpu_hour == listing.price_per_gpu_hour <= request.max_price_per_gpu_hour
    assert {x.match_id for x in plan.preempted} <= running_ids
    for x in plan.preempted:
        assert all(not by_request[r].interruptible for r in x.request_ids)
    # On-demand demand is placed on free capacity exactly as without interruptible demand.
    on_demand = replace(p, requests=tuple(r for r in p.requests if not r.interruptible))
    alone = with_tiers(on_demand, solve)
    placed = sorted(
        (a.request_id, a.listing_id, a.nodes) for a in plan.assignments if not by_request[a.request_id].interruptible
    )
    assert placed == sorted((a.request_id, a.listing_id, a.nodes) for a in alone.assignments)
