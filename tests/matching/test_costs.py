"""The cost model and edge feasibility, in words."""

from datetime import timedelta
from decimal import Decimal

import pytest

from matching import costs
from matching.latency import LatencyClass
from matching.problem import VoucherTerms
from tests.matching.builders import NOW, lst, req


def test_energy_cost_is_tdp_times_pue_times_tariff():
    # 700 W × 1.2 × 0.36 CNY/kWh = 0.3024 CNY per GPU-hour
    assert costs.energy_cost_per_gpu_hour(700, 1.2, 0.36) == Decimal("0.3024")


def test_default_latency_weights_tighten_with_the_class():
    weights = [costs.default_latency_weight(c) for c in LatencyClass]
    assert weights == sorted(weights, reverse=True)
    assert costs.default_latency_weight("interactive") == Decimal("0.02")


def test_edge_cost_is_price_minus_subsidy_plus_latency():
    voucher = VoucherTerms(code="SH30", percent=Decimal(30), remaining_value=Decimal(1000))
    edge = costs.edge_cost(req(weight="0.02", voucher=voucher), lst(price="10"), 35.8)
    assert (edge.price, edge.subsidy, edge.latency_cost) == (Decimal("10.0000"), Decimal("3.0000"), Decimal("0.7160"))
    assert edge.cost == Decimal("7.7160")


@pytest.mark.parametrize(
    ("eligibility", "subsidised"),
    [
        ({}, True),
        ({"eligible_regions": ("yrd",)}, True),
        ({"eligible_regions": ("guian",)}, False),
        ({"eligible_providers": (2,)}, False),
        ({"eligible_gpu_models": ("h100",)}, True),
    ],
)
def test_voucher_eligibility_empty_means_any(eligibility, subsidised):
    voucher = VoucherTerms(code="V", percent=Decimal(20), remaining_value=Decimal(1), **eligibility)
    assert (costs.subsidy_per_gpu_hour(voucher, lst(price="10")) > 0) is subsidised


@pytest.mark.parametrize(
    ("request_kw", "listing_kw", "rtt", "reason"),
    [
        ({}, {}, 2.8, None),
        ({}, {"model": "a100"}, 2.8, "a100 is not h100"),
        ({"size": 8}, {"gpn": 4, "nodes": (4,)}, 2.8, "nodes of 4 GPUs < 8 per replica"),
        ({"bound": 30.0}, {"region": "ningxia-zhongwei"}, 35.8, "ningxia-zhongwei: 35.8 ms > 30 ms bound"),
        ({"bound": None}, {"region": "ningxia-zhongwei"}, 35.8, None),
        ({"cap": "12"}, {"price": "14"}, 2.8, "price 14.00 > cap 12.00"),
        ({"hours": 24}, {"days": 0.5}, 2.8, "window ends before 24 h fit"),
        (
            {"start_by": NOW},
            {"opens": NOW + timedelta(hours=2)},
            2.8,
            "opens 2025-06-01 02:00 UTC, after start-by 2025-06-01 00:00",
        ),
        ({"size": 8}, {"nodes": (7, 6)}, 2.8, "no node with 8 free GPUs"),
        ({}, {}, None, "yrd: RTT to shanghai unknown"),
        ({"min_reliability": 0.99}, {}, 2.8, "yrd listing 1: too little history for a reliability bound"),
        ({"min_reliability": 0.99}, {"reliability": 0.965}, 2.8, "yrd listing 1: reliability 0.9650 < 0.9900 required"),
        ({"min_reliability": 0.99, "cap": "9"}, {"reliability": 0.5}, 2.8, "price 10.00 > cap 9.00"),
    ],
)
def test_infeasibility_names_the_first_blocking_rule(request_kw, listing_kw, rtt, reason):
    assert costs.infeasibility(req(**request_kw), lst(**listing_kw), rtt, NOW) == reason
