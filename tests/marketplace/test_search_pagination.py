"""Listing search counts with its page (one query) and the search parameters' reference codes come
from the process's copy of the reference table."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.fields import DateTimeField

from marketplace import selectors
from marketplace.api.fields import UtcTimeOut
from marketplace.api.listings import ListingOut
from marketplace.models import Region, Rtt

SEARCH = "/api/v1/listings/?gpu_model=h20&ordering=price&page_size=3"


def test_pages_carry_the_full_count_and_the_right_rows(clients, make_listing):
    prices = [f"{5 + n / 10:.4f}" for n in range(7)]
    for price in reversed(prices):
        make_listing(price_per_gpu_hour=Decimal(price))
    client = clients["buyer"]
    pages = [client.get(f"{SEARCH}&page={n}").json() for n in (1, 2, 3)]
    assert [page["count"] for page in pages] == [7, 7, 7]
    assert [row["price_per_gpu_hour"] for page in pages for row in page["results"]] == prices
    assert pages[2]["next"] is None
    assert pages[0]["previous"] is None


def test_an_empty_search_is_an_empty_first_page_and_past_the_end_is_404(clients, make_listing):
    client = clients["buyer"]
    assert client.get(SEARCH).json() == {"count": 0, "next": None, "previous": None, "results": []}
    make_listing()
    assert client.get(f"{SEARCH}&page=2").status_code == 404
    assert client.get(f"{SEARCH}&page=last").json()["count"] == 1


def test_a_search_page_is_one_query_and_its_reliability_one_more_once_the_reference_codes_are_read(
    clients, make_listing
):
    make_listing()
    client = clients["buyer"]
    url = "/api/v1/listings/?origin=shanghai&gpu_model=h20&latency_class=standard"
    client.get(url)  # reads the reference codes into this process
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).json()["count"] == 1
    match_queries = [q["sql"] for q in queries if 'FROM "marketplace_match"' in q["sql"]]
    assert len(match_queries) == 1, match_queries  # the page's and its providers' reliability
    listing_queries = [q["sql"] for q in queries if 'FROM "marketplace_listing"' in q["sql"]]
    assert len(listing_queries) == 1, listing_queries
    assert not [q["sql"] for q in queries if 'FROM "marketplace_region"' in q["sql"]]
    assert not [q["sql"] for q in queries if "marketplace_rtt" in q["sql"]]


def test_rtts_are_read_again_once_the_reference_data_is_reloaded(reference):
    shanghai, horinger = (Region.objects.get(code=c) for c in ("shanghai", "inner-mongolia-horinger"))
    assert selectors.rtts_from(shanghai)[horinger.pk] == Decimal("29.9")
    Rtt.objects.filter(source_region=shanghai, target_region=horinger).update(rtt_ms=Decimal("12.5"))
    assert selectors.rtts_from(shanghai)[horinger.pk] == Decimal("29.9")  # this process's copy
    selectors.reference_forget()  # what reference_load does on commit
    assert selectors.rtts_from(shanghai)[horinger.pk] == Decimal("12.5")


def test_a_region_added_after_the_codes_were_read_is_found_at_once(reference):
    assert selectors.reference_by_code(Region, "shanghai") is not None
    Region.objects.create(
        code="lhasa",
        name="Lhasa",
        kind="hub",
        province="Tibet",
        lat=29.65,
        lon=91.1,
        power_price_cny_kwh="0.30",
        pue="1.2",
    )
    assert selectors.reference_by_code(Region, "lhasa").name == "Lhasa"
    assert selectors.reference_by_code(Region, "atlantis") is None


def test_a_listing_reads_the_same_as_field_by_field(clients, make_listing, now):
    make_listing(price_per_gpu_hour=Decimal("5.1234"), available_until=(now + timedelta(days=1)).replace(microsecond=0))
    make_listing(region="shanghai", gpu_count=8, gpus_per_node=8)
    for url in ("/api/v1/listings/?origin=shanghai", "/api/v1/listings/"):
        served = clients["buyer"].get(url).json()["results"]
        filters = {"origin": Region.objects.get(code="shanghai")} if "origin" in url else {}
        rows = selectors.listing_search(selectors.ListingFilters(**filters), viewer=None)
        rtts = selectors.rtts_from(filters.get("origin"))
        assert served == [ListingOut(context={"rtt_ms_by_region": rtts}).field_by_field(row) for row in rows]
        assert {row["rtt_ms"] is None for row in served} == {"origin" not in url}


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), ZoneInfo("Asia/Shanghai")])))
def test_times_read_as_drf_writes_them(value):
    assert UtcTimeOut(default_timezone=UTC).to_representation(value) == DateTimeField().to_representation(value)
