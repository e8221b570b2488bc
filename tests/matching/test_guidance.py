"""Guidance for idle listings (matching.guidance): the reasons, hand-checked, and the suggested price
confirmed by re-solving at it (placed) and one fen above it (not placed)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from matching import guidance as g
from matching.problem import sold_gpu_hours
from matching.solver import solve
from tests.matching.builders import NOW, lst, problem, req

FLOOR = Decimal("0.30")


def _suggest(p, listing_id=9):
    ceiling = g.price_ceiling(p, listing_id, Decimal(1000))
    return g.suggest_price(p, listing_id, solve, floor=FLOOR, ceiling=ceiling)


def _sold(p, listing_id, price) -> int:
    shifted = g.at_price(p, listing_id, price)
    return sold_gpu_hours(shifted, solve(shifted), listing_id)


def _confirmed(p, suggestion, listing_id=9) -> None:
    """The suggestion holds on re-solving: placed at its price, not placed (or fewer GPU-hours) one fen up."""
    assert suggestion.price is not None
    assert _sold(p, listing_id, suggestion.price) == suggestion.gpu_hours > 0
    assert _sold(p, listing_id, suggestion.price + g.FEN) < suggestion.gpu_hours


def _codes(reasons):
    return [r.code for r in reasons]


def test_demand_capped_within_reach_suggests_the_cap():
    # One request from Shanghai, cap 5.20, reaches yrd; the listing asks 5.80: nothing else competes.
    p = problem([req(1, cap="5.20", replicas=2, hours=10)], [lst(9, price="5.80", nodes=(8,))])
    reasons = g.diagnose(p, 9, gpu_hours_at_price=_sold(p, 9, Decimal("5.80")))
    assert reasons == [g.Reason(g.PRICE_ABOVE_CAP, 1, {"cap": Decimal("5.2000"), "price": Decimal("5.8000")})]
    suggestion = _suggest(p)
    assert suggestion.price == Decimal("5.20")
    assert suggestion.gpu_hours == 2 * 10
    _confirmed(p, suggestion)


def test_a_cheaper_rival_sets_the_price_not_the_cap():
    # Demand for 1 GPU (cap 8) and a rival at 4.00 with latency cost equal: the listing is placed
    # only when it is cheaper than the rival, so the highest price that fills it is 3.99.
    p = problem(
        [req(1, cap="8", replicas=1, hours=5, weight="0")],
        [lst(9, region="yrd", price="6"), lst(2, region="yrd", price="4.00")],
    )
    reasons = g.diagnose(p, 9, gpu_hours_at_price=_sold(p, 9, Decimal("6")))
    assert _codes(reasons) == [g.OUTCOMPETED]
    suggestion = _suggest(p)
    assert suggestion.price == Decimal("3.99")
    _confirmed(p, suggestion)


def test_no_demand_within_the_bound_gives_no_price():
    p = problem([req(1, bound=30.0), req(2, bound=20.0)], [lst(9, region="ningxia-zhongwei", price="3")])
    reasons = g.diagnose(p, 9, gpu_hours_at_price=0)
    assert reasons == [g.Reason(g.OUT_OF_REACH, 2, {"region": "ningxia-zhongwei", "all": True})]
    assert g.price_ceiling(p, 9, Decimal(1000)) is None
    suggestion = _suggest(p)
    assert suggestion.price is None
    assert suggestion.probes == ()


def test_no_demand_at_all():
    p = problem([req(1, model="a100")], [lst(9, price="3")])
    assert g.diagnose(p, 9, gpu_hours_at_price=0) == [g.Reason(g.NO_DEMAND, 0)]


def test_window_too_short():
    # The listing closes in 10 hours; the request needs 24.
    listing = lst(9, price="3")
    listing = replace(listing, available_until=NOW + timedelta(hours=10))
    p = problem([req(1, hours=24)], [listing])
    assert g.diagnose(p, 9, gpu_hours_at_price=0) == [g.Reason(g.WINDOW_SHORT, 1, {"hours": 24})]
    assert _suggest(p).price is None


def test_node_size_mismatch_and_the_fitting_demand_out_of_reach():
    # Nodes of 1 GPU; near demand wants 8-GPU replicas; 1-GPU demand exists only beyond the bound.
    p = problem(
        [req(1, size=8, bound=30.0), req(2, size=1, origin="shanghai", bound=10.0)],
        [lst(9, region="guian", gpn=1, nodes=(1, 1, 1, 1), price="3")],
    )
    reasons = g.diagnose(p, 9, gpu_hours_at_price=0)
    assert reasons == [
        g.Reason(g.NODE_SIZE, 1, {"gpus_per_node": 1, "sizes": [8]}),
        g.Reason(g.OUT_OF_REACH, 1, {"region": "guian", "all": False}),
    ]
    assert _suggest(p).price is None


def test_nothing_fills_it_above_the_floor():
    # A rival at 0.20 takes the only request at any price of ours ≥ the 0.30 floor.
    p = problem([req(1, cap="5")], [lst(9, price="3"), lst(2, price="0.20")])
    suggestion = _suggest(p)
    assert suggestion.price is None
    assert [probe.gpu_hours for probe in suggestion.probes] == [0, 0]


def test_placed_at_its_own_price_says_no_outcompeted():
    p = problem([req(1, cap="9", replicas=3, hours=2)], [lst(9, price="5")])
    sold = _sold(p, 9, Decimal("5"))
    assert sold == 6
    assert g.diagnose(p, 9, gpu_hours_at_price=sold) == []
    suggestion = _suggest(p)
    assert suggestion.price == Decimal("9.00")  # the cap: nobody may pay more
    _confirmed(p, suggestion)


def test_the_solve_budget_is_enforced():
    p = problem([req(1, cap="1000")], [lst(9, price="3")])
    with pytest.raises(ValueError, match="re-solves"):
        g.suggest_price(p, 9, solve, floor=Decimal("0.01"), ceiling=Decimal(1000), max_solves=5)


def _random_market(seed: int):
    rng = random.Random(seed)
    regions = ["shanghai", "yrd", "guian", "ningxia-zhongwei"]
    requests = [
        req(
            i,
            size=rng.choice([1, 2, 4, 8]),
            replicas=rng.randint(1, 3),
            origin=rng.choice(["shanghai", "yrd"]),
            bound=rng.choice([None, 10.0, 30.0, 40.0]),
            cap=f"{rng.randint(200, 1200) / 100:.2f}",
            hours=rng.randint(1, 48),
            weight=rng.choice(["0", "0.005", "0.05"]),
            priority=rng.choice([0, 0, 1]),
        )
        for i in range(1, 13)
    ]
    listings = [
        lst(
            j,
            region=rng.choice(regions),
            gpn=(gpn := rng.choice([1, 4, 8])),
            nodes=tuple(gpn for _ in range(rng.randint(1, 3))),
            price=f"{rng.randint(150, 1000) / 100:.2f}",
        )
        for j in range(1, 9)
    ]
    return problem(requests, listings)


@pytest.mark.parametrize("seed", range(6))
def test_suggestions_confirmed_and_monotone_on_random_markets(seed):
    """The search's assumption, checked: placed at a price ⇒ placed at every lower price sampled; and
    each suggestion re-solves as placed at its price and not placed one fen above."""
    p = _random_market(seed)
    for listing in p.listings:
        suggestion = _suggest(p, listing.id)
        assert len(suggestion.probes) <= g.MAX_SOLVES
        if suggestion.price is None:
            continue
        _confirmed(p, suggestion, listing.id)
        for below in (FLOOR, (FLOOR + suggestion.price) / 2, suggestion.price - g.FEN):
            price = max(FLOOR, below.quantize(g.FEN))
            assert _sold(p, listing.id, price) > 0, (listing.id, price)
