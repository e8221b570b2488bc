"""Explanations, quotes and components."""

import json
from decimal import Decimal

from matching.graph.components import split
from matching.latency import LatencyClass
from matching.problem import VoucherTerms
from matching.quote import quote
from matching.solver import solve
from tests.matching.builders import lst, problem, req

WEST = {"id": 1, "region": "ningxia-zhongwei", "price": "7.2"}
EAST = {"id": 2, "region": "yrd", "price": "10"}


def test_explanation_lists_the_cheaper_option_rejected_for_latency():
    voucher = VoucherTerms(code="SH", percent=Decimal(30), remaining_value=Decimal(10_000), program="shanghai-2025")
    plan = solve(problem([req(bound=30.0, voucher=voucher)], [lst(**WEST), lst(**EAST)]))
    explanation = plan.assignments[0].explanation
    json.dumps(explanation)
    assert explanation["region"] == "yrd"
    assert explanation["subsidy_per_gpu_hour"] == "3.0000"
    assert explanation["voucher_program"] == "shanghai-2025"
    assert explanation["latency_class"] == "realtime"
    assert explanation["rejected"] == [
        {
            "region": "ningxia-zhongwei",
            "listing_id": 1,
            "price_per_gpu_hour": "7.2000",
            "rtt_ms": 35.8,
            "reason": "ningxia-zhongwei: 35.8 ms > 30 ms bound",
        }
    ]


def test_explanation_says_a_cheaper_feasible_listing_was_full():
    requests = [req(1, bound=60.0, priority=1), req(2, bound=60.0)]
    plan = solve(problem(requests, [lst(**WEST, nodes=(1,)), lst(**EAST)]))
    dearer = next(a for a in plan.assignments if a.region == "yrd")
    assert (
        dearer.explanation["rejected"][0]["reason"]
        == "full: capacity taken by higher-priority or cheaper-placed requests"
    )


def test_quote_shows_the_frontier_from_realtime_to_batch():
    p = problem([], [lst(**WEST), lst(**EAST), lst(3, region="guian", price="8")])
    q = quote(p, req(bound=30.0, hours=10))
    body = q.to_dict()
    json.dumps(body)
    assert body["placement"][0]["region"] == "guian"
    assert body["total_cost"] == "80.0000"
    frontier = {f["latency_class"]: f for f in body["frontier"]}
    assert frontier[LatencyClass.REALTIME]["region"] == "yrd"
    assert frontier[LatencyClass.INTERACTIVE]["region"] == "guian"
    assert frontier[LatencyClass.BATCH]["region"] == "ningxia-zhongwei"
    assert frontier[LatencyClass.BATCH]["total_cost"] == "72.0000"


def test_quote_ignores_other_open_requests():
    p = problem([req(9, replicas=8)], [lst(**EAST)])
    assert quote(p, req(1)).replicas_placed == 1


def test_split_separates_models_and_components_deterministically():
    requests = [
        req(1, model="h100", bound=10.0),
        req(2, model="h20"),
        req(3, model="h100", origin="guian", bound=10.0),
        req(4, model="a100"),
    ]
    listings = [lst(1, model="h100"), lst(2, model="h20"), lst(3, model="h100", region="guian")]
    subs = split(problem(requests, listings))
    assert [[r.id for r in s.requests] for s in subs] == [[1], [3], [2], [4]]
    assert [[x.id for x in s.listings] for s in subs] == [[1], [3], [2], []]


def test_solving_components_apart_gives_the_same_objective():
    requests = [req(i, replicas=2, bound=60.0, model=("h100", "h20")[i % 2]) for i in range(1, 7)]
    listings = [
        lst(j, model=("h100", "h20")[j % 2], region=("yrd", "guian")[j % 3 == 0], nodes=(3,)) for j in range(1, 5)
    ]
    p = problem(requests, listings)
    whole = solve(p)
    assert sum((solve(s).objective for s in split(p)), Decimal(0)) == whole.objective
