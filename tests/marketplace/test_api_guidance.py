"""GET /api/v1/listings/{id}/guidance/: only the listing's provider reads it; its suggested price is
confirmed by re-solving the same market at that price and one fen above."""

from __future__ import annotations

from decimal import Decimal

from rest_framework.test import APIClient

from marketplace import selectors, services
from matching import guidance as g
from matching.problem import sold_gpu_hours
from matching.solver import solve

API = "/api/v1"


def _capped_market(make_listing, make_request):
    """An H20 listing at 6.00 in ningxia-zhongwei and batch demand from Shanghai capped at 5.20."""
    listing = make_listing(price_per_gpu_hour=Decimal("6.00"))
    make_request(latency_class="batch", max_price_per_gpu_hour=Decimal("5.20"), replicas=2, duration_hours=10)
    return listing


def test_the_owner_reads_the_reason_and_the_price_that_fills_it(clients, make_listing, make_request):
    listing = _capped_market(make_listing, make_request)
    response = clients["provider"].get(f"{API}/listings/{listing.pk}/guidance/")
    assert response.status_code == 200, response.data
    body = response.data
    assert body["listing"] == listing.pk
    assert body["free_gpus"] == 16
    assert body["price_per_gpu_hour"] == "6.0000"
    assert body["next_round_gpu_hours"] == 0
    assert body["suggested_price_per_gpu_hour"] == "5.2000"
    assert body["suggested_gpu_hours"] == 2 * 10
    assert body["reason_codes"] == ["price_above_cap"]
    assert body["idle_reasons"] == ["Demand within reach is capped at ¥5.20, your price is ¥6.00."]
    assert [p["gpu_hours"] for p in body["probes"]] == [20]  # the cap itself fills it: one probe
    assert body["solves"] == 2
    assert body["computed_at"].endswith("Z")


def test_the_suggestion_re_solves_as_stated(clients, provider, make_listing, make_request):
    listing = _capped_market(make_listing, make_request)
    make_listing(price_per_gpu_hour=Decimal("4.10"), gpu_count=8, region="gansu-qingyang")  # a rival
    guidance = selectors.listing_guidance(listing_id=listing.pk, provider=provider)
    assert guidance.suggested_price == Decimal("4.09")
    problem = selectors.engine_problem(gpu_model_code="h20", now=guidance.now).problem
    for price, placed in ((guidance.suggested_price, True), (guidance.suggested_price + g.FEN, False)):
        shifted = g.at_price(problem, listing.pk, price)
        assert (sold_gpu_hours(shifted, solve(shifted), listing.pk) > 0) is placed


def test_no_demand_in_reach_gives_null_and_the_reason_in_chinese(clients, make_listing, make_request):
    listing = make_listing()
    make_request(latency_class="realtime")  # Shanghai, realtime: ningxia-zhongwei is beyond its bound
    response = clients["provider"].get(
        f"{API}/listings/{listing.pk}/guidance/", HTTP_ACCEPT_LANGUAGE="zh-hans"
    )
    assert response.status_code == 200
    assert response.data["suggested_price_per_gpu_hour"] is None
    assert response.data["suggested_gpu_hours"] == 0
    assert response.data["reason_codes"] == ["out_of_reach"]
    assert response.data["probes"] == []
    assert "Ningxia" in response.data["idle_reasons"][0]  # the API names regions in English
    assert "时延上限" in response.data["idle_reasons"][0]


def test_nobody_else_reads_a_listings_guidance(clients, make_listing):
    listing = make_listing()
    url = f"{API}/listings/{listing.pk}/guidance/"
    assert clients["other_provider"].get(url).status_code == 404
    assert clients["buyer"].get(url).status_code == 403
    assert clients["anonymous"].get(url).status_code in (401, 403)
    assert clients["provider"].get(f"{API}/listings/999999/guidance/").status_code == 404
    assert clients["provider"].get(url, {"price": "3"}).status_code == 400  # no filters taken


def test_a_read_key_reads_guidance(provider, make_listing, clients):
    listing = make_listing()
    owner = provider.members.get().user
    key = services.api_key_create(organisation=provider, user=owner, name="pricing", scopes=["read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key.secret}")
    response = client.get(f"{API}/listings/{listing.pk}/guidance/")
    assert response.status_code == 200
    assert response.data["reason_codes"] == ["no_demand"]


def test_a_withdrawn_listing_is_not_on_the_market(clients, provider, make_listing):
    listing = make_listing()
    services.listing_withdraw(listing_id=listing.pk, provider=provider)
    response = clients["provider"].get(f"{API}/listings/{listing.pk}/guidance/")
    assert response.data["reason_codes"] == ["not_active"]
    assert response.data["solves"] == 0
