"""Hand-checked optima: each case is small enough to verify on paper."""

from datetime import timedelta
from decimal import Decimal

import pytest

from matching.greedy import greedy
from matching.problem import VoucherTerms
from matching.solver import solve
from tests.matching.builders import NOW, lst, problem, req

WEST = {"id": 1, "region": "ningxia-zhongwei", "price": "7"}
EAST = {"id": 2, "region": "yrd", "price": "10"}


def placed(plan) -> dict[tuple[int, int], int]:
    return {(a.request_id, a.listing_id): a.replicas for a in plan.assignments}


CASES = [
    # (name, requests, listings, expected placement, expected objective CNY)
    (
        "latency bound binding keeps realtime work east",
        [req(bound=10.0)],
        [lst(**WEST), lst(**EAST)],
        {(1, 2): 1},
        "240",
    ),
    (
        "western option chosen when the bound allows it",
        [req(bound=60.0)],
        [lst(**WEST), lst(**EAST)],
        {(1, 1): 1},
        "168",
    ),
    (
        "latency weight still prefers cheap west",
        [req(bound=60.0, weight="0.02")],
        [lst(**WEST), lst(**EAST)],
        {(1, 1): 1},
        "185.184",
    ),
    (
        "a heavy latency weight keeps work east",
        [req(bound=60.0, weight="0.2")],
        [lst(**WEST), lst(**EAST)],
        {(1, 2): 1},
        "253.44",
    ),
    (
        "price cap binding",
        [req(bound=60.0, cap="8")],
        [lst(**WEST), lst(id=2, region="yrd", price="7.5")],
        {(1, 1): 1},
        "168",
    ),
    (
        "node packing: two 4-GPU replicas cannot use two nodes of 3",
        [req(size=4, replicas=2, bound=60.0)],
        [lst(id=1, region="ningxia-zhongwei", price="7", nodes=(3, 3)), lst(**EAST, nodes=(8,))],
        {(1, 2): 2},
        "1920",
    ),
    (
        "partial fill spreads over listings, cheapest first",
        [req(replicas=5, bound=60.0)],
        [lst(id=1, region="ningxia-zhongwei", price="7", nodes=(2,)), lst(**EAST, nodes=(1,))],
        {(1, 1): 2, (1, 2): 1},
        "576",
    ),
    (
        "priority wins scarce capacity",
        [req(1, replicas=2, priority=0), req(2, replicas=2, priority=5)],
        [lst(**EAST, nodes=(3,))],
        {(2, 2): 2, (1, 2): 1},
        "720",
    ),
    (
        "exact beats cheapest-first: the flexible request goes west",
        [req(1, bound=60.0), req(2, bound=10.0)],
        [lst(id=1, region="ningxia-zhongwei", price="7", nodes=(1,)), lst(id=2, region="yrd", price="6", nodes=(1,))],
        {(1, 1): 1, (2, 2): 1},
        "312",
    ),
    (
        "mixed sizes pack whole nodes for the big replica",
        [req(1, size=8, bound=60.0), req(2, size=1, replicas=2, bound=60.0)],
        [lst(**WEST, nodes=(8, 2))],
        {(1, 1): 1, (2, 1): 2},
        "1680",
    ),
]


@pytest.mark.parametrize(("name", "requests", "listings", "expected", "objective"), CASES, ids=[c[0] for c in CASES])
def test_solver_finds_the_hand_checked_optimum(name, requests, listings, expected, objective):
    plan = solve(problem(requests, listings))
    assert placed(plan) == expected
    assert plan.objective == Decimal(objective)
    assert plan.gap == 0.0


def test_greedy_leaves_the_realtime_request_unserved_where_the_solver_does_not():
    p = problem(
        [req(1, bound=60.0), req(2, bound=10.0)],
        [lst(id=1, region="ningxia-zhongwei", price="7", nodes=(1,)), lst(id=2, region="yrd", price="6", nodes=(1,))],
    )
    assert greedy(p).served_replicas == 1
    assert solve(p).served_replicas == 2


@pytest.mark.parametrize(
    ("request_kw", "listings", "reason", "blocked"),
    [
        (
            {"cap": "9"},
            [lst(**WEST), lst(**EAST)],
            "no h100 within 30 ms of shanghai at <= 9.00 CNY (cheapest there: 10.00)",
            {"kind": "price", "cheapest": "10.00"},
        ),
        (
            {"bound": 2.0},
            [lst(**WEST), lst(**EAST)],
            "no h100 within 2 ms of shanghai (nearest: yrd at 2.8 ms)",
            {"kind": "too_far", "region": "yrd", "rtt_ms": 2.8},
        ),
        ({"model": "h20"}, [lst(**EAST)], "no h20 listed", {"kind": "none_listed"}),
        ({"size": 16}, [lst(**EAST)], "no h100 with nodes of >= 16 GPUs", {"kind": "node_size"}),
        (
            {"hours": 24},
            [lst(**EAST, days=0.5)],
            "no h100 within 30 ms of shanghai at <= 20.00 CNY free for 24 h starting by 2025-06-01 01:00 UTC",
            {"kind": "window"},
        ),
        (
            {"size": 4},
            [lst(**EAST, nodes=(3, 3))],
            "no h100 within 30 ms of shanghai at <= 20.00 CNY has a node with 4 free GPUs",
            {"kind": "node_free"},
        ),
        (
            {"min_reliability": 0.99},
            [lst(**EAST, reliability=0.965), lst(id=3, region="yrd", price="9")],
            "no h100 within 30 ms of shanghai at <= 20.00 CNY with reliability >= 0.9900"
            " (listings with too little history have no score)",
            {"kind": "reliability"},
        ),
    ],
)
def test_unserved_requests_say_what_blocked_them(request_kw, listings, reason, blocked):
    """In words for people, and as data for pages and clients (which never parse the words)."""
    plan = solve(problem([req(**request_kw)], listings))
    assert [u.reason for u in plan.unserved] == [reason]
    assert [u.blocked for u in plan.unserved] == [blocked]


def test_partially_served_request_says_capacity_was_taken():
    plan = solve(problem([req(replicas=5)], [lst(**EAST, nodes=(3,))]))
    assert plan.unserved[0].replicas == 2
    assert (
        plan.unserved[0].reason
        == "3 of 5 replicas placed; capacity taken by higher-priority or cheaper-placed requests"
    )
    assert plan.unserved[0].blocked == {"kind": "capacity"}


def test_voucher_budget_caps_the_subsidy_actually_paid():
    voucher = VoucherTerms(code="SH", percent=Decimal(30), remaining_value=Decimal(50), program="shanghai")
    plan = solve(problem([req(voucher=voucher)], [lst(**EAST)]))
    (a,) = plan.assignments
    # Full subsidy would be 3.00 × 24 h = 72 CNY; only 50 remain: 50 / 24 rounded down.
    assert a.subsidy_per_gpu_hour == Decimal("2.0833")
    assert a.cost_per_gpu_hour == Decimal("7.9167")
    assert a.subsidy_per_gpu_hour * 24 <= voucher.remaining_value
    assert plan.objective == Decimal("190.0008")
    assert plan.lower_bound <= plan.objective


def test_one_voucher_shared_by_two_requests_is_capped_across_both():
    voucher = VoucherTerms(code="SH", percent=Decimal(50), remaining_value=Decimal(150))
    plan = solve(problem([req(1, voucher=voucher), req(2, voucher=voucher)], [lst(**EAST, nodes=(2,))]))
    paid = sum(a.subsidy_per_gpu_hour * a.gpus * 24 for a in plan.assignments)
    assert paid <= Decimal(150)
    assert paid > Decimal("149.9")


def test_window_opening_after_start_by_is_infeasible():
    late = lst(**EAST, opens=NOW + timedelta(hours=5))
    plan = solve(problem([req(start_by=NOW + timedelta(hours=1))], [late]))
    assert plan.served_replicas == 0
    assert "starting by" in plan.unserved[0].reason


def test_assignment_starts_when_the_listing_opens():
    opens = NOW + timedelta(hours=2)
    plan = solve(problem([req(start_by=NOW + timedelta(hours=3))], [lst(**EAST, opens=opens)]))
    assert plan.assignments[0].starts_at == opens


def test_plan_is_deterministic():
    requests = [req(i, replicas=i, size=1 + i % 2, bound=60.0) for i in range(1, 6)]
    listings = [lst(**WEST, nodes=(5, 3)), lst(**EAST, nodes=(4, 4))]
    first, second = solve(problem(requests, listings)), solve(problem(requests, listings))
    assert first.assignments == second.assignments
    assert first.objective == second.objective


@pytest.mark.parametrize(
    ("min_reliability", "expected"),
    [
        (None, {(1, 1): 1}),  # no bound: the cheapest listing, scored or not
        (0.0, {(1, 2): 1}),  # any bound rules out the listing without history
        (0.96, {(1, 2): 1}),
        (0.99, {(1, 3): 1}),  # 0.965 < 0.99: only the dearest, reliable listing
        (0.9999, {}),
    ],
)
def test_a_reliability_bound_keeps_the_request_off_listings_below_it_or_without_history(min_reliability, expected):
    listings = [
        lst(1, region="yrd", price="8"),  # too little history
        lst(2, region="yrd", price="9", reliability=0.965),
        lst(3, region="yrd", price="12", reliability=0.995),
    ]
    p = problem([req(min_reliability=min_reliability)], listings)
    assert placed(solve(p)) == expected
    assert placed(greedy(p)) == expected


def test_the_explanation_names_the_reliability_bound():
    listings = [
        lst(1, region="yrd", price="8"),
        lst(2, region="guian", price="9", reliability=0.965),
        lst(3, region="yrd", price="12", reliability=0.995),
    ]
    # Alternatives are the cheapest listing of each region, so the two rejected ones sit in two regions.
    plan = solve(problem([req(min_reliability=0.99)], listings))
    reasons = {r["listing_id"]: r["reason"] for r in plan.assignments[0].explanation["rejected"]}
    assert reasons == {
        1: "yrd listing 1: too little history for a reliability bound",
        2: "guian listing 2: reliability 0.9650 < 0.9900 required",
    }
