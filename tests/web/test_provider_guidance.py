"""The Guidance panel on the provider page: lazily loaded per idle listing, in English and Chinese,
with localised names and yuan; only the listing's provider sees it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from marketplace.models import Organisation
from tests.conftest import member
from tests.web.test_provider_pages import signed_in, text


@pytest.fixture
def prov(reference, provider):
    return member("prov", provider)


def _capped(make_listing, make_request):
    listing = make_listing(price_per_gpu_hour=Decimal("5.80"))
    make_request(latency_class="batch", max_price_per_gpu_hour=Decimal("5.20"), replicas=2, duration_hours=10)
    return listing


def test_the_dashboard_links_each_idle_listing_to_its_guidance_without_solving(
    prov, make_listing, make_request, django_assert_max_num_queries
):
    listing = _capped(make_listing, make_request)
    client = signed_in(prov)
    page = text(client.get("/provider/"))
    assert f'hx-get="/provider/listings/{listing.pk}/guidance/"' in page
    assert 'hx-trigger="intersect once"' in page
    make_listing(price_per_gpu_hour=Decimal("5.90"))
    with django_assert_max_num_queries(40) as counted:
        client.get("/provider/")
    two = len(counted.captured_queries)
    for _ in range(3):
        make_listing()
    with django_assert_max_num_queries(two):  # more listings, not more queries: no solve on the page
        client.get("/provider/")


def test_the_panel_in_english(prov, make_listing, make_request):
    listing = _capped(make_listing, make_request)
    panel = text(signed_in(prov).get(f"/provider/listings/{listing.pk}/guidance/"))
    assert "Suggested price: <strong>¥5.20/GPU·h</strong>" in panel
    assert "20 GPU-hours sold" in panel
    assert "Demand within reach is capped at ¥5.20, your price is ¥5.80." in panel
    assert "5.2000" not in panel
    assert "exact re-solve" in panel


def test_the_panel_in_chinese_names_the_region_in_chinese(prov, make_listing, make_request):
    listing = make_listing()
    make_request(latency_class="realtime")  # Shanghai realtime: Ningxia is beyond its bound
    panel = text(signed_in(prov, "zh-hans").get(f"/provider/listings/{listing.pk}/guidance/"))
    assert "宁夏" in panel
    assert "ningxia-zhongwei" not in panel
    assert "Ningxia" not in panel
    assert "暂无建议价格" in panel


def test_another_provider_gets_404(reference, make_listing):
    listing = make_listing()
    stranger = member("stranger", Organisation.objects.create(name="Other DC", kind="provider"))
    assert signed_in(stranger).get(f"/provider/listings/{listing.pk}/guidance/").status_code == 404
