"""The web pages through Django's test client: who may open what, forms that speak the services'
rules beside the right field, the quote panel, the monitor's data, CSP, constant query counts."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from marketplace import selectors
from marketplace.models import BuyerRequest, Listing, Match, Organisation
from marketplace.services.rounds import round_run
from marketplace.web.csp import POLICY
from tests.marketplace.test_reliability import history
from tests.services_helpers import reserve

REQUEST_FORM = {
    "gpu_model": "h20",
    "gpus_per_replica": "2",
    "replicas": "3",
    "origin": "shanghai",
    "latency_class": "interactive",
    "max_price_per_gpu_hour": "9.00",
    "duration_hours": "24",
}
LISTING_FORM = {
    "region": "ningxia-zhongwei",
    "gpu_model": "h20",
    "gpu_count": "16",
    "gpus_per_node": "8",
    "price_per_gpu_hour": "5.80",
}






def text(response) -> str:
    return response.content.decode()


# --- access -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "url", "expected"),
    [
        ("anonymous", "/", 200),
        ("anonymous", "/signin/", 200),
        ("anonymous", "/signup/", 200),
        ("anonymous", "/provider/", 302),
        ("anonymous", "/buyer/", 302),
        ("anonymous", "/monitor/", 302),
        ("provider", "/provider/", 200),
        ("provider", "/provider/listings/new/", 200),
        ("provider", "/buyer/", 403),
        ("provider", "/monitor/", 403),
        ("buyer", "/buyer/", 200),
        ("buyer", "/buyer/requests/new/", 200),
        ("buyer", "/provider/", 403),
        ("buyer", "/monitor/live/", 403),
        ("staff", "/monitor/", 200),
        ("staff", "/monitor/live/", 200),
        ("staff", "/monitor/unserved/", 200),
        ("staff", "/monitor/charts.json", 200),
    ],
)
def test_each_page_opens_only_for_its_audience(web, role, url, expected):
    response = web[role].get(url)
    assert response.status_code == expected
    if expected == 302:
        assert response["Location"].startswith(f"/signin/?next={url}")


def test_pages_carry_a_strict_content_security_policy_and_no_inline_script(web):
    response = web["anonymous"].get("/")
    assert response["Content-Security-Policy"] == POLICY
    assert "'unsafe-inline'" not in POLICY
    assert "<script>" not in text(response)
    assert "/static/vendor/htmx.min.js" in text(response)
    assert "cdn" not in text(response).lower()


@pytest.mark.parametrize(("role", "target"), [("provider", "/provider/"), ("buyer", "/buyer/"), ("staff", "/monitor/")])
def test_each_role_lands_on_its_own_page_after_sign_in(web, role, target):
    assert web[role].get("/me/")["Location"] == target


def test_sign_in_and_out(web):
    client = Client()
    response = client.post("/signin/", {"username": "buy", "password": "pw-for-tests-1"})
    assert response["Location"] == "/me/"
    assert client.get("/buyer/").status_code == 200
    assert client.post("/signout/")["Location"] == "/"
    assert client.get("/buyer/").status_code == 302


def test_sign_up_creates_a_buyer_through_the_service_and_signs_it_in(reference):
    client = Client()
    body = {
        "role": "buyer",
        "organisation": "Li Inference",
        "username": "li",
        "email": "li@example.com",
        "password": "a-long-pass-phrase",
    }
    response = client.post("/signup/", body)
    assert response["Location"] == "/me/"
    assert client.get("/buyer/").status_code == 200
    assert Organisation.objects.get(name="Li Inference").kind == "buyer"


def test_sign_up_shows_the_services_errors_beside_their_fields(web):
    body = {"role": "provider", "organisation": "Huangpu Chat AI", "username": "x1", "email": "x@example.com"}
    response = Client().post("/signup/", {**body, "password": "123"})
    assert response.status_code == 400
    assert "is already registered" in response.context["form"].errors["organisation"][0]
    response = Client().post("/signup/", {**body, "organisation": "New DC", "password": "123"})
    assert "password" in response.context["form"].errors


# --- capacity board -----------------------------------------------------------------------------


def test_board_draws_every_region_sized_by_idle_gpus_and_coloured_by_latency_class(web, make_listing):
    make_listing(region="ningxia-zhongwei", gpu_count=32)
    make_listing(region="anhui-wuhu", gpu_count=8)
    response = web["anonymous"].get("/?origin=shanghai&gpu_model=h20")
    assert response.status_code == 200
    points = {p.item.region.code: p for p in response.context["points"]}
    assert len(points) == 21
    assert points["ningxia-zhongwei"].css_class == "lc-standard"
    assert points["anhui-wuhu"].css_class == "lc-realtime"
    assert points["ningxia-zhongwei"].r > points["anhui-wuhu"].r
    assert points["beijing"].css_class.endswith("empty")
    assert points["shanghai"].is_origin
    assert response.context["total_free"] == 40


def test_board_filters_by_gpu_model(web, make_listing):
    make_listing(region="ningxia-zhongwei", gpu_model="h20")
    make_listing(region="guizhou-guian", gpu_model="a100", gpus_per_node=8)
    rows = web["anonymous"].get("/?origin=beijing&gpu_model=a100").context["rows"]
    assert {row.region.code for row in rows if row.free_gpus} == {"guizhou-guian"}


def test_board_refuses_an_unknown_origin(web):
    response = web["anonymous"].get("/?origin=atlantis")
    assert response.status_code == 400
    assert "origin" in response.context["form"].errors


# --- provider -----------------------------------------------------------------------------------


def test_provider_lists_capacity_through_the_service(web, provider):
    response = web["provider"].post("/provider/listings/new/", LISTING_FORM)
    assert response["Location"] == "/provider/"
    listing = Listing.objects.get(provider=provider)
    assert (listing.region.code, listing.gpu_count, listing.price_per_gpu_hour) == (
        "ningxia-zhongwei",
        16,
        Decimal("5.80"),
    )
    page = text(web["provider"].get("/provider/"))
    assert f'id="listing-{listing.pk}"' in page


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"gpu_count": "12"}, "gpu_count", "12 GPUs do not fill whole nodes of 8."),
        (
            {"available_from": "2030-01-02T00:00", "available_until": "2030-01-01T00:00"},
            "available_until",
            "Must be after",
        ),
        ({"price_per_gpu_hour": "0"}, "price_per_gpu_hour", "Ensure this value is greater than or equal to 0.0001."),
        ({"gpus_per_node": "3"}, "gpus_per_node", "Select a valid choice"),
    ],
)
def test_listing_form_shows_each_rule_beside_its_field(web, changes, field, message):
    response = web["provider"].post("/provider/listings/new/", {**LISTING_FORM, **changes})
    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors[field])
    assert f'id="err-{field}"' in text(response)
    assert not Listing.objects.exists()


def test_provider_edits_and_withdraws_a_listing(web, make_listing):
    listing = make_listing()
    url = f"/provider/listings/{listing.pk}/edit/"
    page = web["provider"].get(url)
    form = {name: page.context["form"][name].value() for name in page.context["form"].fields}
    # As a browser posts them: times in the input's format, an empty field as "".
    form = {
        k: v.strftime("%Y-%m-%dT%H:%M") if hasattr(v, "strftime") else "" if v is None else v for k, v in form.items()
    }
    assert web["provider"].post(url, {**form, "price_per_gpu_hour": "6.50"})["Location"] == "/provider/"
    listing.refresh_from_db()
    assert listing.price_per_gpu_hour == Decimal("6.50")
    web["provider"].post(f"/provider/listings/{listing.pk}/withdraw/")
    listing.refresh_from_db()
    assert listing.status == Listing.Status.WITHDRAWN


def test_editing_below_the_matched_gpus_is_refused_beside_the_count(web, make_listing, make_request, now):
    listing = make_listing(gpu_count=16)
    reserve(listing, make_request(gpus_per_replica=8, replicas=2), now, nodes=(0, 1))
    response = web["provider"].post(
        f"/provider/listings/{listing.pk}/edit/", {"gpu_count": "8", "gpus_per_node": "8", "price_per_gpu_hour": "6.00"}
    )
    assert response.status_code == 400
    assert "16 GPUs are allocated" in response.context["form"].errors["gpu_count"][0]


def test_another_providers_listing_does_not_exist(web, make_listing, other_provider):
    listing = make_listing(provider=other_provider)
    assert web["provider"].get(f"/provider/listings/{listing.pk}/edit/").status_code == 404
    web["provider"].post(f"/provider/listings/{listing.pk}/withdraw/")
    listing.refresh_from_db()
    assert listing.status == Listing.Status.ACTIVE


def test_provider_sees_utilisation_matches_and_earnings(web, make_listing, make_request, now):
    listing = make_listing(gpu_count=16, price_per_gpu_hour=Decimal("6.00"))
    reserve(listing, make_request(gpus_per_replica=8, replicas=1), now)
    dashboard = web["provider"].get("/provider/").context["dashboard"]
    (usage,) = dashboard.listings
    assert usage.utilisation == 0.5
    assert usage.booked == Decimal("1152.00")  # 8 GPUs × 24 h × 6.00
    assert Decimal(0) <= usage.earned_so_far < Decimal("1")
    assert len(dashboard.recent_matches) == 1


# --- buyer --------------------------------------------------------------------------------------


def test_quote_panel_uses_the_quote_selector_and_agrees_with_the_api(web, make_listing):
    make_listing(region="ningxia-zhongwei", price_per_gpu_hour=Decimal("5.50"))
    make_listing(region="yrd-qingpu-wujiang-jiashan", price_per_gpu_hour=Decimal("9.00"))
    response = web["buyer"].post("/buyer/quote/", REQUEST_FORM)
    quote = response.context["quote"]
    assert [a.region for a in quote.assignments] == ["yrd-qingpu-wujiang-jiashan"]
    page = text(response)
    assert "Price–latency frontier" in page
    assert "Zhongwei cluster (Ningxia hub)" in page
    assert "ningxia-zhongwei" not in page  # names, never codes (issue 18)
    api_client = APIClient()
    api_client.force_authenticate(get_user_model().objects.get(username="buy"))
    numbers = ("gpus_per_replica", "replicas", "duration_hours")  # a form's strings, as JSON types
    body = {key: int(value) if key in numbers else value for key, value in REQUEST_FORM.items()}
    api = api_client.post("/api/v1/quotes/", body, format="json").json()
    assert api["total_cost"] == str(quote.total_cost)
    assert api["buyer_pays_total"] == str(response.context["summary"].rent)
    assert not BuyerRequest.objects.exists()


def test_quote_panel_sends_field_errors_out_of_band(web):
    response = web["buyer"].post("/buyer/quote/", {**REQUEST_FORM, "max_rtt_ms": "20"})
    page = text(response)
    assert response.context["quote"] is None
    assert 'id="err-max_rtt_ms" role="alert" hx-swap-oob="true">Give latency_class or max_rtt_ms, not both.' in page


def test_buyer_submits_a_request_through_the_service(web, buyer):
    response = web["buyer"].post("/buyer/requests/new/", {**REQUEST_FORM, "latency_class": "", "max_rtt_ms": "25"})
    assert response["Location"] == "/buyer/"
    request = BuyerRequest.objects.get(buyer=buyer)
    assert (request.latency_class, request.max_rtt_ms) == ("interactive", Decimal("25.0"))


def test_request_form_shows_the_rules_beside_the_field(web):
    response = web["buyer"].post("/buyer/requests/new/", {**REQUEST_FORM, "start_by": "2001-01-01T00:00"})
    assert response.status_code == 400
    assert response.context["form"].errors["start_by"] == ["Must be in the future."]
    assert not BuyerRequest.objects.exists()


def test_buyer_sees_each_match_with_why_and_what_was_rejected(web, make_listing, make_request):
    make_listing(region="ningxia-zhongwei", price_per_gpu_hour=Decimal("5.50"))
    make_listing(region="yrd-qingpu-wujiang-jiashan", price_per_gpu_hour=Decimal("9.00"))
    request = make_request(latency_class="interactive", gpus_per_replica=2, replicas=1)
    round_run(shard="h20", trigger="manual")
    page = text(web["buyer"].get("/buyer/"))
    match = Match.objects.get(request=request)
    assert f"Match #{match.pk}" in page
    assert f"Why {match.listing.region.name}:" in page
    assert "Zhongwei cluster (Ningxia hub): 35.8 ms &gt; 30 ms bound" in page


def test_buyer_cancels_a_request(web, make_request):
    request = make_request()
    web["buyer"].post(f"/buyer/requests/{request.pk}/cancel/")
    request.refresh_from_db()
    assert request.status == BuyerRequest.Status.CANCELLED


# --- monitor ------------------------------------------------------------------------------------


def test_monitor_feed_shows_new_matches_and_runs(web, make_listing, make_request):
    make_listing(region="ningxia-zhongwei")
    make_request(latency_class="standard")
    run_id = round_run(shard="h20", trigger="manual")
    page = text(web["staff"].get("/monitor/live/"))
    match = Match.objects.get()
    assert f'data-match="{match.pk}"' in page
    assert f'data-run="{run_id}"' in page


def test_monitor_charts_split_gpu_hours_west_and_price_by_region(web, make_listing, make_request, now):
    west = make_listing(region="ningxia-zhongwei", price_per_gpu_hour=Decimal("6.00"))
    east = make_listing(region="anhui-wuhu", price_per_gpu_hour=Decimal("9.00"))
    reserve(west, make_request(gpus_per_replica=8, replicas=1), now)  # 8 GPUs × 24 h
    reserve(east, make_request(gpus_per_replica=2, replicas=1), now)  # 2 GPUs × 24 h
    data = json.loads(web["staff"].get("/monitor/charts.json").content)
    assert data["west_share"]["share"] == pytest.approx(0.8)
    assert data["avg_price"]["matched"]["ningxia-zhongwei"] == "6.00"
    assert data["series"]["ningxia-zhongwei"]["matched"][-1] == 8
    assert data["series"]["ningxia-zhongwei"]["idle"][-1] == 8
    assert len(data["labels"]) == len(data["series"]["anhui-wuhu"]["idle"])


def test_monitor_shows_the_latest_clearing_prices_in_both_languages(web, make_listing, make_request):
    make_listing(region="yrd-qingpu-wujiang-jiashan", gpu_count=8, price_per_gpu_hour=Decimal("6.00"))
    make_listing(region="ningxia-zhongwei", gpu_count=16, price_per_gpu_hour=Decimal("7.00"))
    make_request(latency_class="standard", gpus_per_replica=1, replicas=12)
    staff = web["staff"]
    assert "No round has priced capacity yet." in text(staff.get("/monitor/", HTTP_ACCEPT_LANGUAGE="en"))
    round_run(shard="h20", trigger="manual")
    page = text(staff.get("/monitor/", HTTP_ACCEPT_LANGUAGE="en"))
    table = page[page.index('id="prices-table"') :]
    table = table[: table.index("</table>")]
    # The west with GPUs left over first (¥7.00, no rent), then the full eastern hub (ask + rent).
    assert table.index("Zhongwei") < table.index("Qingpu")
    assert "¥7.00/GPU·h" in table
    assert "¥0.00/GPU·h" in table
    assert "1 of 1" in table
    assert "CST" in table
    zh = text(staff.get("/monitor/", HTTP_ACCEPT_LANGUAGE="zh-CN"))
    assert "出清价格" in zh
    assert "稀缺租金" in zh
    assert "¥7.00/卡·时" in zh


def test_monitor_lists_unserved_open_requests_with_their_reason(web, make_listing, make_request):
    make_listing(region="ningxia-zhongwei")
    request = make_request(latency_class="realtime")
    round_run(shard="h20", trigger="manual")
    (row,) = selectors.unserved_requests()
    assert row.request.pk == request.pk
    assert "no h20 within 10 ms of shanghai" in row.reason
    assert "no h20 within 10 ms of shanghai" in text(web["staff"].get("/monitor/unserved/"))


# --- constant queries ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "url"),
    [
        ("anonymous", "/?origin=shanghai"),
        ("provider", "/provider/"),
        ("buyer", "/buyer/"),
        ("staff", "/monitor/"),
        ("staff", "/monitor/live/"),
        ("staff", "/monitor/unserved/"),
        ("staff", "/monitor/charts.json"),
    ],
)
def test_pages_cost_a_constant_number_of_queries(web, make_listing, make_request, now, role, url):
    def grow(n):
        for _ in range(n):
            listing = make_listing(region="guizhou-guian")
            reserve(listing, make_request(gpus_per_replica=8, replicas=1), now)
            make_request(latency_class="realtime", gpu_model="a100")
        round_run(shard="a100", trigger="manual")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert web[role].get(url).status_code == 200
        return len(captured)

    queries()  # this process's copy of the reference data (selectors.market) is read once, first
    grow(2)
    few = queries()
    grow(6)
    assert queries() == few


# --- vouchers -----------------------------------------------------------------------------------


@pytest.fixture
def shanghai_voucher(reference, buyer, now):
    """A 30 % programme with one code issued to ``buyer``."""
    from datetime import timedelta

    from marketplace import services

    program = services.voucher_program_create(
        name="Shanghai compute voucher",
        sponsor="Shanghai municipal government",
        budget=Decimal("100000"),
        percent=Decimal("30"),
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=90),
    )
    return services.vouchers_issue(program_id=program.pk, sponsor_provider=None, buyer=buyer)[0]


def test_buyer_quotes_and_submits_with_a_voucher_and_sees_it(web, make_listing, shanghai_voucher):
    make_listing(region="ningxia-zhongwei", price_per_gpu_hour=Decimal("6.00"))
    form = {**REQUEST_FORM, "latency_class": "standard", "voucher_code": shanghai_voucher.code}
    summary = web["buyer"].post("/buyer/quote/", form).context["summary"]
    assert summary.subsidy > 0
    assert web["buyer"].post("/buyer/requests/new/", form)["Location"] == "/buyer/"
    round_run(shard="h20", trigger="manual")
    page = text(web["buyer"].get("/buyer/"))
    assert shanghai_voucher.code in page
    assert "voucher Shanghai compute voucher" in page


def test_an_unknown_voucher_code_is_refused_beside_its_field(web):
    response = web["buyer"].post("/buyer/requests/new/", {**REQUEST_FORM, "voucher_code": "NOPE"})
    assert response.status_code == 400
    assert "voucher_code" in response.context["form"].errors


def test_monitor_shows_voucher_spend_against_budget(web, make_listing, make_request, shanghai_voucher):
    make_listing(region="ningxia-zhongwei")
    make_request(voucher_code=shanghai_voucher.code)
    round_run(shard="h20", trigger="manual")
    (row,) = web["staff"].get("/monitor/").context["programs"]
    assert row.spent > 0
    assert row.program.remaining_budget == row.program.budget - row.spent
    assert "Voucher spend against budget" in text(web["staff"].get("/monitor/"))


# --- reliability ------------------------------------------------------------------------------


def test_board_and_provider_page_show_reliability_and_say_when_history_is_too_little(
    web, make_listing, make_request, now
):
    request = make_request()
    scored = make_listing(region="ningxia-zhongwei")
    history(scored, request, now, statuses=("completed",) * 4 + ("failed",))
    make_listing(region="ningxia-zhongwei")  # new: no score
    make_listing(region="anhui-wuhu")  # new, alone in its region
    rows = {row.region.code: row for row in web["anonymous"].get("/?origin=shanghai&gpu_model=h20").context["rows"]}
    assert (rows["ningxia-zhongwei"].best_reliability, rows["ningxia-zhongwei"].scored_listings) == (
        Decimal("0.8000"),
        1,
    )
    assert rows["anhui-wuhu"].best_reliability is None
    page = text(web["anonymous"].get("/?origin=shanghai&gpu_model=h20"))
    assert "0.8000" in page
    assert "new: too little history" in page
    response = web["provider"].get("/provider/")
    dashboard = response.context["dashboard"]
    assert (dashboard.reliability.text, dashboard.reliability.matches) == ("0.8000", 5)
    assert {u.listing.pk: u.reliability.status for u in dashboard.listings}[scored.pk] == "scored"
    assert "new (0 matches)" in text(response)


def test_the_request_form_takes_a_reliability_bound_and_refuses_one_above_1(web, buyer):
    response = web["buyer"].post("/buyer/requests/new/", {**REQUEST_FORM, "min_reliability": "0.99"})
    assert response.status_code == 302
    assert BuyerRequest.objects.get(buyer=buyer).min_reliability == Decimal("0.9900")
    response = web["buyer"].post("/buyer/requests/new/", {**REQUEST_FORM, "min_reliability": "1.5"})
    assert response.status_code == 400
    assert "min_reliability" in response.context["form"].errors
