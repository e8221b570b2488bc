"""The quote says what the buyer pays (price − subsidy, charged as the settlement charges it) beside
the engine's score (which adds the notional latency weight), and a match run to its end settles at
exactly the quoted ``buyer_pays_total``."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from marketplace import services
from marketplace.models import Match, Region, Settlement
from marketplace.services.rounds import round_run

BODY = {
    "gpu_model": "h20",
    "gpus_per_replica": 1,
    "replicas": 2,
    "origin": "shanghai",
    "max_rtt_ms": "31",
    "latency_weight": "0.15",
    "max_price_per_gpu_hour": "10",
    "duration_hours": 24,
}


@pytest.fixture
def voucher_code(reference, buyer, now):
    program = services.voucher_program_create(
        name="Qingyang compute voucher",
        sponsor="Qingyang government",
        percent=Decimal("30"),
        budget=Decimal("100000"),
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=365),
        eligible_regions=[Region.objects.get(code="gansu-qingyang")],
    )
    return services.vouchers_issue(program_id=program.pk, sponsor_provider=None, buyer=buyer)[0].code


def test_the_quote_says_what_the_buyer_pays_beside_the_score(clients, make_listing, voucher_code):
    make_listing(region="gansu-qingyang", price_per_gpu_hour=Decimal("5.59"))
    quote = clients["buyer"].post("/api/v1/quotes/", {**BODY, "voucher_code": voucher_code}).json()
    (line,) = quote["placement"]
    # 5.59 − 30 % (1.677) = 3.913 per GPU-hour; 48 GPU-hours: 268.32 gross − 80.49 subsidy (rounded down)
    assert (line["buyer_pays_per_gpu_hour"], line["buyer_pays_total"]) == ("3.9130", "187.83")
    assert (quote["buyer_pays_per_gpu_hour"], quote["buyer_pays_total"]) == ("3.9130", "187.83")
    # The score adds 0.15 CNY/ms × 30.6 ms: it is not what anyone pays.
    assert Decimal(line["cost_per_gpu_hour"]) > Decimal(line["buyer_pays_per_gpu_hour"])
    assert Decimal(quote["total_cost"]) > Decimal(quote["buyer_pays_total"])
    frontier = {point["latency_class"]: point for point in quote["frontier"]}
    assert frontier["standard"]["buyer_pays_total"] == "187.83"
    assert frontier["realtime"]["replicas_placed"] == 0
    assert (frontier["realtime"]["buyer_pays_total"], frontier["realtime"]["buyer_pays_per_gpu_hour"]) == ("0.00", None)
    # What blocked the realtime point, as data beside the words; nothing blocked the placement.
    assert frontier["realtime"]["blocked_detail"]["kind"] == "too_far"
    assert frontier["realtime"]["blocked_detail"]["region"] == "gansu-qingyang"
    assert (quote["unserved_reason"], quote["unserved_detail"]) == ("", None)


def test_a_match_run_to_its_end_settles_at_the_quoted_buyer_pays(clients, make_listing, make_request, voucher_code):
    make_listing(region="gansu-qingyang", price_per_gpu_hour=Decimal("5.59"))
    quote = clients["buyer"].post("/api/v1/quotes/", {**BODY, "voucher_code": voucher_code}).json()
    make_request(
        voucher_code=voucher_code, latency_class=None, max_rtt_ms=Decimal("31"), latency_weight=Decimal("0.15")
    )
    round_run(shard="h20", trigger="manual")
    match = Match.objects.get()
    services.lifecycle_tick(now=match.starts_at + timedelta(minutes=1))
    services.lifecycle_tick(now=match.ends_at + timedelta(minutes=1))
    line = Settlement.objects.get(match=match)
    assert str(line.buyer_pays) == quote["buyer_pays_total"] == "187.83"


def test_the_schema_names_the_score_and_what_the_buyer_pays():
    from drf_spectacular.generators import SchemaGenerator

    schemas = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    for name in ("QuoteOut", "QuotePlacementOut", "FrontierPointOut"):
        properties = schemas[name]["properties"]
        assert "What the buyer" in properties["buyer_pays_total"]["description"], name
        assert "Unit: CNY" in properties["buyer_pays_total"]["description"], name
        assert "score" in properties["cost_per_gpu_hour" if name != "QuoteOut" else "total_cost"]["description"], name
