"""The buyer's pages (issue 18): money that says what the buyer pays, a request form that takes
China Standard Time, waits for input before it complains and wants a custom bound's value, a
voucher picker, a dashboard that updates itself and says why a request waits and what would help,
a cancel that asks first, pagination, filter and sort, and statements with the API's CSV."""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from marketplace import services
from marketplace.models import BuyerRequest, Match, MatchingRun, Region, Settlement
from marketplace.selectors.buyer_pages import PAGE_SIZE
from marketplace.services.rounds import round_run
from tests.web.test_pages import REQUEST_FORM, text

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")




@pytest.fixture
def voucher(reference, buyer, now):
    """A 30 % Qingyang programme with one code issued to ``buyer``."""
    program = services.voucher_program_create(
        name="Qingyang compute voucher",
        sponsor="Qingyang government",
        budget=Decimal("100000"),
        percent=Decimal("30"),
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=90),
        eligible_regions=[Region.objects.get(code="gansu-qingyang")],
    )
    return services.vouchers_issue(program_id=program.pk, sponsor_provider=None, buyer=buyer)[0]


def money(amount: Decimal) -> str:
    return f"¥{amount:,.2f}"


def paid_figures(page: str, kind: str) -> list[str]:
    """The figures a page labels as paid (``data-paid="kind"``)."""
    return re.findall(rf'data-paid="{kind}">(¥[0-9,.]+)', page)


# --- the request form ---------------------------------------------------------------------------


def test_a_typed_0900_is_china_standard_time_and_stored_as_0100_utc(web, buyer):
    tomorrow = (datetime.now(SHANGHAI) + timedelta(days=1)).date()
    form = {**REQUEST_FORM, "start_by": f"{tomorrow:%Y-%m-%d}T09:00"}
    assert web["buyer"].post("/buyer/requests/new/", form)["Location"] == "/buyer/"
    start_by = BuyerRequest.objects.get(buyer=buyer).start_by
    assert start_by == datetime.combine(tomorrow, time(1, 0), tzinfo=UTC)
    page = text(web["buyer"].get("/buyer/"))
    assert f"start by {tomorrow:%Y-%m-%d} 09:00 CST" in page
    assert "Start by (CST)" in text(web["buyer"].get("/buyer/requests/new/"))


def test_the_live_quote_flags_no_untouched_field(web):
    untouched = {key: value for key, value in REQUEST_FORM.items() if key != "max_price_per_gpu_hour"}
    page = text(web["buyer"].post("/buyer/quote/", untouched))
    assert "This field is required." not in page
    assert "Fill in Price cap per GPU-hour (CNY) to see a quote." in page
    assert 'id="err-max_price_per_gpu_hour" role="alert" hx-swap-oob="true"></span>' in page
    # Submitting is when a missing value is an error.
    response = web["buyer"].post("/buyer/requests/new/", untouched)
    assert response.context["form"].errors["max_price_per_gpu_hour"] == ["This field is required."]


def test_the_form_page_opens_without_an_error_in_chinese(web):
    page = text(web["buyer"].get("/buyer/requests/new/", HTTP_ACCEPT_LANGUAGE="zh-CN"))
    assert "This field is required." not in page
    assert "自定义" in page  # "Custom bound" is offered in Chinese


def test_a_custom_bound_needs_its_value_and_is_shown_as_its_bound(web, buyer, make_listing):
    custom = {**REQUEST_FORM, "latency_class": "custom"}
    response = web["buyer"].post("/buyer/requests/new/", custom)
    assert response.status_code == 400
    assert response.context["form"].errors["max_rtt_ms"] == ["A custom bound needs its max RTT, e.g. 31."]
    assert not BuyerRequest.objects.exists()
    assert web["buyer"].post("/buyer/requests/new/", {**custom, "max_rtt_ms": "31"})["Location"] == "/buyer/"
    request = BuyerRequest.objects.get(buyer=buyer)
    assert (request.max_rtt_ms, request.latency_class) == (Decimal("31.0"), "standard")
    make_listing(region="yrd-qingpu-wujiang-jiashan")  # 2.8 ms from Shanghai
    round_run(shard="h20", trigger="manual")
    page = text(web["buyer"].get("/buyer/"))
    assert "≤ 31 ms" in page
    assert re.search(r"within the ≤ 31 ms bound\s*\.", page)
    assert "Realtime" not in page
    assert "standard (≤ 31" not in page
    assert "Standard (≤ 31" not in page


def test_the_voucher_picker_offers_own_usable_vouchers_and_feeds_the_code(web, buyer, voucher, make_listing):
    make_listing(region="gansu-qingyang", price_per_gpu_hour=Decimal("5.59"))
    page = text(web["buyer"].get("/buyer/requests/new/"))
    assert f'<option value="{voucher.code}">Qingyang compute voucher · ¥' in page
    form = {**REQUEST_FORM, "latency_class": "standard", "voucher": voucher.code}
    summary = web["buyer"].post("/buyer/quote/", form).context["summary"]
    assert summary.subsidy > 0
    assert web["buyer"].post("/buyer/requests/new/", form)["Location"] == "/buyer/"
    assert BuyerRequest.objects.get(buyer=buyer).voucher.code == voucher.code


def test_a_voucher_picked_and_another_typed_is_refused(web, voucher):
    form = {**REQUEST_FORM, "voucher": voucher.code, "voucher_code": "SOMETHING-ELSE"}
    response = web["buyer"].post("/buyer/requests/new/", form)
    assert response.context["form"].errors["voucher_code"] == ["Pick a voucher or type a code, not both."]


# --- money that says what the buyer pays --------------------------------------------------------


def api_as(username: str) -> APIClient:
    client = APIClient()
    client.force_authenticate(get_user_model().objects.get(username=username))
    return client


def test_every_figure_labelled_as_paid_is_the_quotes_and_the_settlements_buyer_pays(web, buyer, voucher, make_listing):
    make_listing(region="gansu-qingyang", price_per_gpu_hour=Decimal("5.59"))
    form = {
        **REQUEST_FORM,
        "gpus_per_replica": "1",
        "replicas": "2",
        "latency_class": "custom",
        "max_rtt_ms": "31",
        "latency_weight": "0.15",
        "max_price_per_gpu_hour": "10",
        "voucher": voucher.code,
    }
    quote_page = web["buyer"].post("/buyer/quote/", form)
    body = {
        "gpu_model": "h20",
        "gpus_per_replica": 1,
        "replicas": 2,
        "origin": "shanghai",
        "max_rtt_ms": "31",
        "latency_weight": "0.15",
        "max_price_per_gpu_hour": "10",
        "duration_hours": 24,
        "voucher_code": voucher.code,
    }
    api = api_as("buy").post("/api/v1/quotes/", body, format="json").json()
    assert api["buyer_pays_total"] == "187.83"
    page = text(quote_page)
    assert paid_figures(page, "quote-total") == [money(Decimal(api["buyer_pays_total"]))]
    assert re.search(r'data-paid="quote-rate">¥3.91/GPU·h', page)
    assert "Engine score (price + latency weight)" in page
    assert "Engine cost (incl. latency)" not in page

    assert web["buyer"].post("/buyer/requests/new/", form)["Location"] == "/buyer/"
    round_run(shard="h20", trigger="manual")
    match = Match.objects.get()
    dashboard = text(web["buyer"].get("/buyer/"))
    assert paid_figures(dashboard, "total") == ["¥187.83"]
    assert paid_figures(dashboard, "booked") == ["¥187.83"]
    services.lifecycle_tick(now=match.starts_at + timedelta(minutes=1))
    services.lifecycle_tick(now=match.ends_at + timedelta(minutes=1))
    settlement = Settlement.objects.get(match=match)
    assert paid_figures(dashboard, "total") == [money(settlement.buyer_pays)]

    statement = text(web["buyer"].get(f"/statements/?month={settlement.settled_at:%Y-%m}"))
    assert paid_figures(statement, "statement-line") == [money(settlement.buyer_pays)]
    assert paid_figures(statement, "statement-total") == [money(settlement.buyer_pays)]


# --- the dashboard ------------------------------------------------------------------------------


def test_an_unmatched_request_says_why_and_that_a_higher_cap_would_help(web, make_listing, make_request):
    make_listing(region="yrd-qingpu-wujiang-jiashan", price_per_gpu_hour=Decimal("12.50"))
    make_request(latency_class="interactive", max_price_per_gpu_hour=Decimal("9.00"))
    round_run(shard="h20", trigger="manual")
    page = text(web["buyer"].get("/buyer/"))
    assert "2 of 2 replicas are not placed yet." in page
    assert "costs more than your cap of ¥9.00/GPU·h" in page
    assert "Raise the cap to ¥12.50/GPU·h." in page
    zh = text(web["buyer"].get("/buyer/", HTTP_ACCEPT_LANGUAGE="zh-CN"))
    assert "¥12.50/卡·时" in zh
    assert "Raise the cap" not in zh


def test_a_request_bound_too_tight_is_told_which_class_would_reach_capacity(web, make_listing, make_request):
    make_listing(region="ningxia-zhongwei")  # 35.8 ms from Shanghai
    make_request(latency_class="interactive")
    round_run(shard="h20", trigger="manual")
    page = text(web["buyer"].get("/buyer/"))
    assert "the nearest is Zhongwei cluster (Ningxia hub) at 35.8 ms" in page
    assert "Relax to Standard (≤ 60 ms) to use it." in page


def test_the_advice_comes_from_the_rounds_data_not_its_words(web, make_listing, make_request):
    """The page reads what blocked a request from the run's ``blocked`` data; a run recorded before
    that data existed (words only) still gets a sentence, the engine's own words, and no advice."""
    make_listing(region="ningxia-zhongwei")
    request = make_request(latency_class="interactive")
    round_run(shard="h20", trigger="manual")
    run = MatchingRun.objects.get()
    (entry,) = run.unserved
    assert entry["blocked"] == {"kind": "too_far", "region": "ningxia-zhongwei", "rtt_ms": 35.8}
    entry["reason"] = "(words the page must not need)"
    run.save(update_fields=["unserved"])
    page = text(web["buyer"].get("/buyer/"))
    assert "Relax to Standard (≤ 60 ms) to use it." in page

    del entry["blocked"]
    entry["reason"] = f"no h20 within 30 ms of shanghai (nearest: ningxia-zhongwei at 35.8 ms) #{request.pk}"
    run.save(update_fields=["unserved"])
    page = text(web["buyer"].get("/buyer/"))
    assert "Relax to" not in page
    assert f"#{request.pk}" in page


def test_a_match_appears_through_the_polled_partial_and_nothing_is_sent_while_nothing_changed(
    web, make_listing, make_request
):
    make_request()
    first = web["buyer"].get("/buyer/")
    stamp = first.context["listing"].fingerprint
    live = f"/buyer/live/?status=&sort=newest&page=1&stamp={stamp}"
    assert web["buyer"].get(live).status_code == 204
    make_listing()
    round_run(shard="h20", trigger="manual")
    response = web["buyer"].get(live)
    assert response.status_code == 200
    match = Match.objects.get()
    assert f"Match #{match.pk}" in text(response)
    assert 'hx-trigger="every 3s"' in text(response)
    assert text(response).count('id="requests"') == 1


def test_the_polled_partial_costs_a_constant_number_of_queries(web, make_listing, make_request):
    def grow(n):
        for _ in range(n):
            make_listing(region="guizhou-guian")
            make_request(gpus_per_replica=8, replicas=1)
            make_request(latency_class="realtime", gpu_model="a100")
        round_run(shard="h20", trigger="manual")
        round_run(shard="a100", trigger="manual")

    def queries(url) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert web["buyer"].get(url).status_code == 200
        return len(captured)

    grow(2)
    few = queries("/buyer/live/"), queries("/buyer/"), queries("/statements/")
    grow(6)
    assert (queries("/buyer/live/"), queries("/buyer/"), queries("/statements/")) == few


def test_a_cancelled_request_does_not_claim_its_replicas_are_placed(web, make_listing, make_request):
    make_listing()
    request = make_request(replicas=2)
    round_run(shard="h20", trigger="manual")
    assert "2 of 2 replicas placed" in text(web["buyer"].get("/buyer/"))
    services.request_cancel(request_id=request.pk, buyer=request.buyer)
    page = text(web["buyer"].get("/buyer/"))
    assert "replicas placed" not in page
    assert "Cancelled: its matches were stopped and settled" in page


def test_cancel_asks_first_saying_what_will_happen(web, make_listing, make_request):
    make_listing()
    request = make_request(replicas=2)
    round_run(shard="h20", trigger="manual")
    match = Match.objects.get()
    services.lifecycle_tick(now=match.starts_at + timedelta(minutes=1))  # running
    page = text(web["buyer"].get(f"/buyer/requests/{request.pk}/cancel/"))
    assert "1 running match will stop and be settled for the hours it ran." in page
    assert "2 replicas&#x27; GPUs go back to their providers." in page or "2 replicas' GPUs" in page
    request.refresh_from_db()
    assert request.status == BuyerRequest.Status.MATCHED  # asking changed nothing
    zh = text(web["buyer"].get(f"/buyer/requests/{request.pk}/cancel/", HTTP_ACCEPT_LANGUAGE="zh-CN"))
    assert "running match" not in zh
    web["buyer"].post(f"/buyer/requests/{request.pk}/cancel/")
    request.refresh_from_db()
    assert request.status == BuyerRequest.Status.CANCELLED


def test_cancel_says_a_match_not_started_is_released_free_and_it_is(web, make_listing, make_request, now):
    make_listing(available_from=now + timedelta(hours=2))
    request = make_request(replicas=1)
    round_run(shard="h20", trigger="manual")
    page = text(web["buyer"].get(f"/buyer/requests/{request.pk}/cancel/"))
    assert "1 reserved match that has not started will be released at no charge." in page
    assert "running match" not in page
    web["buyer"].post(f"/buyer/requests/{request.pk}/cancel/")
    assert Settlement.objects.get().buyer_pays == Decimal("0.00")


def test_another_buyers_request_has_no_cancel_page(web, other_buyer, make_request):
    theirs = make_request(buyer=other_buyer)
    assert web["buyer"].get(f"/buyer/requests/{theirs.pk}/cancel/").status_code == 404
    assert web["buyer"].post(f"/buyer/requests/{theirs.pk}/cancel/").status_code == 404


def test_requests_come_25_a_page_filtered_and_sorted_by_the_query_string(web, make_request):
    made = [make_request(max_price_per_gpu_hour=Decimal(5 + n % 7)) for n in range(PAGE_SIZE + 3)]
    services.request_cancel(request_id=made[0].pk, buyer=made[0].buyer)
    first = web["buyer"].get("/buyer/")
    rows = first.context["listing"].rows
    assert len(rows) == PAGE_SIZE
    assert rows[0].request.pk == made[-1].pk
    assert "Page 1 of 2" in text(first)
    second = web["buyer"].get("/buyer/?page=2")
    assert [row.request.pk for row in second.context["listing"].rows] == [r.pk for r in made[:3]][::-1]
    oldest = web["buyer"].get("/buyer/?sort=oldest").context["listing"].rows
    assert oldest[0].request.pk == made[0].pk
    by_price = [
        row.request.max_price_per_gpu_hour for row in web["buyer"].get("/buyer/?sort=price").context["listing"].rows
    ]
    assert by_price == sorted(by_price, reverse=True)
    cancelled = web["buyer"].get("/buyer/?status=cancelled").context["listing"].rows
    assert [row.request.pk for row in cancelled] == [made[0].pk]
    assert 'href="?status=&amp;sort=newest&amp;page=2"' in text(first)
    assert web["buyer"].get("/buyer/?page=99&sort=nonsense&status=nonsense").status_code == 200


# --- statements ---------------------------------------------------------------------------------


@pytest.fixture
def settled(make_listing, make_request):
    make_listing(price_per_gpu_hour=Decimal("6.00"))
    make_request(gpus_per_replica=4, replicas=2, duration_hours=24, latency_class="batch")
    round_run(shard="h20", trigger="manual")
    match = Match.objects.get()
    services.lifecycle_tick(now=match.starts_at + timedelta(minutes=1))
    services.lifecycle_tick(now=match.ends_at + timedelta(minutes=1))
    return Settlement.objects.get(match=match)


@pytest.mark.parametrize("role", ["buyer", "provider"])
def test_statements_page_shows_the_month_and_its_csv_is_the_apis(web, settled, role):
    month = f"{settled.settled_at:%Y-%m}"
    response = web[role].get(f"/statements/?month={month}")
    page = text(response)
    assert response.status_code == 200
    own = settled.buyer_pays if role == "buyer" else settled.provider_earns
    assert money(own) in page
    assert ("You pay" in page) == (role == "buyer")
    assert ("You earn" in page) == (role == "provider")
    assert "Zhongwei cluster (Ningxia hub)" in page
    csv_page = web[role].get(f"/statements/csv/?month={month}")
    csv_api = api_as({"buyer": "buy", "provider": "prov"}[role]).get(f"/api/v1/statements/csv/?month={month}")
    assert csv_page["Content-Type"] == csv_api["Content-Type"] == "text/csv"
    assert csv_page["Content-Disposition"] == csv_api["Content-Disposition"]
    assert csv_page.content == csv_api.content
    zh = text(web[role].get(f"/statements/?month={month}", HTTP_ACCEPT_LANGUAGE="zh-CN"))
    assert "结算单" in zh


def test_statements_refuse_a_malformed_month_and_open_for_members_only(web):
    response = web["buyer"].get("/statements/?month=2026-13")
    assert response.status_code == 400
    assert "Choose a month as YYYY-MM" in text(response)
    assert web["buyer"].get("/statements/csv/?month=x").status_code == 400
    assert web["anonymous"].get("/statements/").status_code == 302
    assert web["staff"].get("/statements/").status_code == 403
    empty = text(web["provider"].get("/statements/?month=2001-01"))
    assert "No match ended in this month." in empty


def test_the_quote_says_in_words_why_a_class_places_nothing_and_what_would(web, make_listing):
    make_listing(region="ningxia-zhongwei")  # 35.8 ms from Shanghai
    form = {**REQUEST_FORM, "latency_class": "realtime"}
    page = text(web["buyer"].post("/buyer/quote/", form))
    assert "No NVIDIA H20 96GB is within your latency bound; the nearest is Zhongwei cluster (Ningxia hub)" in page
    assert "Relax to Standard (≤ 60 ms) to use it." in page
    zh = text(web["buyer"].post("/buyer/quote/", form, HTTP_ACCEPT_LANGUAGE="zh-CN"))
    assert "放宽到标准（≤ 60 ms）即可使用。" in zh
    assert "nearest" not in zh
