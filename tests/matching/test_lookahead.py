"""Rounds that look ahead (matching.lookahead): reservations never break a bound, move tolerant work
off scarce capacity, follow the one rule, and change nothing when off."""

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from matching import costs, lookahead
from matching.solver import solve
from tests.matching.builders import NOW, lst, problem, req
from tests.matching.test_properties import FAST, check_valid, exact_objective, problems, served_by_priority
from tests.matching.test_substitution import demand

RESERVATIONS = st.lists(st.sampled_from(["0", "0.5", "1.25", "3", "7"]), min_size=5, max_size=5)


def with_reservations(p, values):
    return replace(p, reservations={x.id: Decimal(v) for x, v in zip(p.listings, values, strict=False)})


def rule_premium(p):
    """The rule, written again from its words: r_j − min r over the listings request i can use."""
    feasible = {
        (i, j)
        for i, r in enumerate(p.requests)
        for j, x in enumerate(p.listings)
        if costs.infeasibility(r, x, costs.rtt_between(p.rtt_ms, r.origin, x.region), p.now) is None
    }

    def reservation(j):
        return p.reservations.get(p.listings[j].id, Decimal(0))

    floor = {i: min(reservation(j) for (k, j) in feasible if k == i) for i, _ in feasible}
    return lambda i, j: reservation(j) - floor[i]


def fingerprint(plan):
    return [(a.request_id, a.listing_id, a.nodes, a.cost_per_gpu_hour) for a in plan.assignments], plan.objective


@FAST
@given(problems(uniform=False), RESERVATIONS)
def test_a_look_ahead_plan_never_breaks_a_bound_cap_window_or_capacity(p, values):
    p = with_reservations(p, values)
    plan = solve(p)
    check_valid(p, plan)
    for a in plan.assignments:
        r = next(r for r in p.requests if r.id == a.request_id)
        assert r.max_rtt_ms is None or a.rtt_ms <= r.max_rtt_ms
        assert a.reservation_per_gpu_hour >= 0


@FAST
@given(problems(uniform=True), RESERVATIONS)
def test_with_one_replica_size_the_look_ahead_serves_as_much_and_is_exact_under_the_rule(p, values):
    """Reservations only rank placements of the same service: served per priority is unchanged,
    and the objective (premiums included) is the independent MILP optimum of the rule's costs."""
    with_rule = with_reservations(p, values)
    plan = solve(with_rule)
    check_valid(with_rule, plan)
    assert served_by_priority(with_rule, plan) == served_by_priority(p, solve(p))
    assert abs(plan.objective - exact_objective(with_rule, rule_premium(with_rule))) <= Decimal("1e-9")
    hours = {r.id: r.duration_hours for r in p.requests}
    premiums = sum(a.reservation_per_gpu_hour * a.gpus * hours[a.request_id] for a in plan.assignments)
    assert Decimal(plan.stats["reservation_cny"]) == premiums


@FAST
@given(problems(uniform=False), st.sampled_from(["0", "2.5"]))
def test_no_reservations_or_one_reservation_everywhere_reproduce_todays_plan_exactly(p, value):
    today = solve(p)
    assert fingerprint(solve(replace(p, reservations={}))) == fingerprint(today)
    # The same reservation on every listing: every request's floor is it, so every premium is 0.
    everywhere = solve(with_reservations(p, [value] * len(p.listings)))
    assert fingerprint(everywhere) == fingerprint(today)
    assert everywhere.stats["reservation_cny"] == "0.0000"


def round_two_rounds(reservations):
    """Round 1: a latency-tolerant request (≤ 60 ms) from Shanghai; round 2: a real-time one (≤ 10 ms).

    One free GPU near Shanghai (yrd, 2.8 ms, 9 CNY), one in Ningxia (35.8 ms, 9.5 CNY). Returns where
    each went (None: unserved)."""
    near, west = lst(1, region="yrd", nodes=(1,), price="9"), lst(2, region="ningxia-zhongwei", nodes=(1,), price="9.5")
    tolerant = req(1, bound=60.0, weight="0.005", cap="12")
    first = solve(replace(problem([tolerant], [near, west]), reservations=reservations))
    taken = {a.listing_id for a in first.assignments}
    left = [replace(x, node_free=(0,)) if x.id in taken else x for x in (near, west)]
    realtime = req(2, bound=10.0, weight="0.05", cap="12")
    second = solve(replace(problem([realtime], left), now=NOW + timedelta(minutes=5), reservations=reservations))
    where = {a.request_id: a.region for a in (*first.assignments, *second.assignments)}
    return where.get(1), where.get(2), first


def test_myopic_rounds_give_the_near_gpu_to_tolerant_work_and_leave_real_time_work_unserved():
    # 9 + 0.005 × 2.8 = 9.014 near against 9.5 + 0.005 × 35.8 = 9.679 west: the near GPU is cheaper.
    assert round_two_rounds({})[:2] == ("yrd", None)


def test_a_reservation_on_the_near_gpu_sends_tolerant_work_west_and_keeps_the_near_gpu_for_real_time_work():
    # Reservation 1.00 on the near GPU: the tolerant request can use the west GPU (reservation 0),
    # so it pays 1.00 near (10.014 > 9.679) and goes west; the real-time request, whose only
    # option is the near GPU, pays no premium and takes it the next round.
    tolerant, realtime, first = round_two_rounds({1: Decimal("1")})
    assert (tolerant, realtime) == ("ningxia-zhongwei", "yrd")
    (a,) = first.assignments
    assert a.cost_per_gpu_hour == Decimal("9.6790")  # the buyer's cost: no premium in it
    assert a.reservation_per_gpu_hour == Decimal("0.0000")


def test_a_reservation_below_the_saving_does_not_move_tolerant_work():
    # 0.60 < 9.679 − 9.014: staying near is still cheaper, premium included.
    tolerant, _, first = round_two_rounds({1: Decimal("0.6")})
    assert tolerant == "yrd"
    assert first.assignments[0].reservation_per_gpu_hour == Decimal("0.6000")
    assert first.objective == (Decimal("9.0140") + Decimal("0.6")) * 24


def test_a_request_whose_only_option_is_reserved_pays_no_premium():
    only_near = req(1, bound=10.0, weight="0.05")
    plan = solve(replace(problem([only_near], [lst(1, region="yrd", nodes=(1,))]), reservations={1: Decimal("5")}))
    assert plan.assignments[0].reservation_per_gpu_hour == 0
    assert plan.stats["reservation_cny"] == "0.0000"


def test_recent_rent_is_the_mean_of_priced_rounds_and_reservations_skip_zero_rents():
    yrd, guian = ("yrd", "h100"), ("guian", "h100")
    rents = lookahead.recent_rent([(*yrd, Decimal("2")), (*yrd, Decimal("0")), (*yrd, None), (*guian, Decimal(0))])
    assert rents == {yrd: Decimal("1.0000"), guian: Decimal("0.0000")}
    listings = [lst(1, region="yrd"), lst(2, region="guian"), lst(3, region="yrd", model="a100")]
    assert lookahead.reservations_by_listing(listings, rents, scale=Decimal(3)) == {1: Decimal("3.0000")}


def test_floors_are_each_requests_lowest_reservation_among_its_listings():
    floors = lookahead.reservation_floors(
        np.array([5, 0, 3]), np.array([0, 0, 1, 1]), np.array([0, 2, 0, 2]), n_requests=3
    )
    assert floors.tolist() == [3, 3, 0]


def test_a_far_off_request_is_held_until_its_period_ends_and_never_past_its_horizon():
    far = req(1, start_by=NOW + timedelta(hours=12))
    hold = {"horizon": timedelta(hours=1), "period": timedelta(hours=1)}
    submitted = NOW + timedelta(minutes=10)  # NOW is on the hour: the period ends at NOW + 1 h
    assert lookahead.held(far, submitted, submitted_at=submitted, **hold)
    assert lookahead.held(far, NOW + timedelta(minutes=59), submitted_at=submitted, **hold)
    assert not lookahead.held(far, NOW + timedelta(hours=1), submitted_at=submitted, **hold)
    soon = req(2, start_by=NOW + timedelta(minutes=50))
    assert not lookahead.held(soon, submitted, submitted_at=submitted, **hold)  # within its horizon
    due = req(3, start_by=NOW + timedelta(hours=1, minutes=20))
    assert lookahead.held(due, submitted, submitted_at=submitted, **hold)
    assert not lookahead.held(due, NOW + timedelta(minutes=21), submitted_at=submitted, **hold)  # horizon reached
    # When it re-enters, as its buyer is told: the period's end, or its horizon if sooner; then no more.
    assert lookahead.held_until(far, submitted, submitted_at=submitted, **hold) == NOW + timedelta(hours=1)
    assert lookahead.held_until(due, submitted, submitted_at=submitted, **hold) == NOW + timedelta(minutes=20)
    assert lookahead.held_until(soon, submitted, submitted_at=submitted, **hold) is None
    assert lookahead.held_until(far, NOW + timedelta(hours=1), submitted_at=submitted, **hold) is None


def test_work_that_may_only_use_near_capacity_is_never_held():
    """Real-time work (an RTT bound within the real-time class's) gains nothing by waiting for the
    call and loses the near GPUs meanwhile: never held, however far off; anything looser is."""
    hold = {"horizon": timedelta(hours=1), "period": timedelta(hours=1)}
    submitted = NOW + timedelta(minutes=10)
    far = NOW + timedelta(hours=12)
    assert not lookahead.held(req(1, bound=10.0, start_by=far), submitted, submitted_at=submitted, **hold)
    assert not lookahead.held(req(2, bound=4.5, start_by=far), submitted, submitted_at=submitted, **hold)
    assert lookahead.held(req(3, bound=10.5, start_by=far), submitted, submitted_at=submitted, **hold)
    assert lookahead.held(req(4, bound=None, start_by=far), submitted, submitted_at=submitted, **hold)
    # Inference demand: near only when every alternative's RTT bound is.
    loose = demand(5, ttft=3000)
    assert any(a.rtt_bound_ms > 10 for a in loose.alternatives)
    near = replace(
        loose, alternatives=tuple(replace(a, rtt_bound_ms=min(a.rtt_bound_ms, 10.0)) for a in loose.alternatives)
    )
    assert lookahead.near_only(near)
    assert not lookahead.near_only(loose)
    assert not lookahead.held(replace(near, start_by=far), submitted, submitted_at=submitted, **hold)
    assert lookahead.held(replace(loose, start_by=far), submitted, submitted_at=submitted, **hold)
