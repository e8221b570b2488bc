"""The interruptible tier on the pages: the listing form's floor, the request form's flag, the quote's tiers."""

from __future__ import annotations

from decimal import Decimal

from marketplace.models import BuyerRequest, Listing
from tests.web.test_pages import LISTING_FORM, REQUEST_FORM, text


def test_a_provider_offers_the_tier_with_a_floor_and_withdraws_it_by_emptying_it(web, provider):
    response = web["provider"].post(
        "/provider/listings/new/", {**LISTING_FORM, "interruptible_floor_price_per_gpu_hour": "2.10"}
    )
    assert response["Location"] == "/provider/"
    listing = Listing.objects.get(provider=provider)
    assert listing.interruptible_floor_price_per_gpu_hour == Decimal("2.10")
    url = f"/provider/listings/{listing.pk}/edit/"
    page = web["provider"].get(url)
    form = {name: page.context["form"][name].value() for name in page.context["form"].fields}
    form = {
        k: v.strftime("%Y-%m-%dT%H:%M") if hasattr(v, "strftime") else "" if v is None else v for k, v in form.items()
    }
    assert web["provider"].post(url, {**form, "interruptible_floor_price_per_gpu_hour": ""})["Location"] == "/provider/"
    listing.refresh_from_db()
    assert listing.interruptible_floor_price_per_gpu_hour is None


def test_a_floor_above_the_price_is_refused_beside_the_floor(web):
    response = web["provider"].post(
        "/provider/listings/new/", {**LISTING_FORM, "interruptible_floor_price_per_gpu_hour": "5.81"}
    )
    assert response.status_code == 400
    assert "at most the price" in " ".join(response.context["form"].errors["interruptible_floor_price_per_gpu_hour"])
    assert not Listing.objects.exists()


def test_a_buyer_submits_an_interruptible_request(web, buyer):
    response = web["buyer"].post("/buyer/requests/new/", {**REQUEST_FORM, "interruptible": "on"})
    assert response["Location"] == "/buyer/"
    assert BuyerRequest.objects.get(buyer=buyer).interruptible is True


def test_the_quote_panel_shows_both_tiers(web, make_listing):
    make_listing(interruptible_floor_price_per_gpu_hour=Decimal("2.10"))
    body = {**REQUEST_FORM, "latency_class": "batch"}
    page = text(web["buyer"].post("/buyer/quote/", body, HTTP_HX_REQUEST="true"))
    assert "on-demand ¥6.00" in page
    assert "interruptible ¥2.10" in page
