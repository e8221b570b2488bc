"""The provider's pages and the admin monitor after issue 18: a window wholly past refused by the
form and the API, an expired listing shown as ended, withdraw and node-failure reports confirmed
with what they will do, promotions through the voucher services, both languages, ¥ and CST, and a
monitor whose prices are what buyers pay."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from marketplace import services
from marketplace.models import Listing, Match, VoucherProgram
from marketplace.services.rounds import round_run
from marketplace.web.formatting import cny_per_gpu_hour
from tests.conftest import member
from tests.services_helpers import reserve
from tests.web.test_pages import LISTING_FORM


def signed_in(user, language: str = "en") -> Client:
    client = Client()
    client.cookies["marketplace_language"] = language
    client.force_login(user)
    return client


@pytest.fixture
def prov(reference, provider):
    return member("prov", provider)


@pytest.fixture
def staff(reference):
    return get_user_model().objects.create_user(username="staff", password="pw-for-tests-1", is_staff=True)


def text(response) -> str:
    return response.content.decode()


def cst(moment) -> str:
    """A moment as the pages print it in English: China Standard Time, labelled."""
    from zoneinfo import ZoneInfo

    return f"{moment.astimezone(ZoneInfo('Asia/Shanghai')):%Y-%m-%d %H:%M} CST"


# --- problem 8: a window wholly in the past --------------------------------------------------


def test_the_form_refuses_a_window_wholly_past_beside_available_until(prov, now):
    from zoneinfo import ZoneInfo

    local = now.astimezone(ZoneInfo("Asia/Shanghai"))
    window = {
        "available_from": (local - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M"),
        "available_until": (local - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
    }
    response = signed_in(prov).post("/provider/listings/new/", {**LISTING_FORM, **window})
    assert response.status_code == 400
    assert "Must be in the future" in " ".join(response.context["form"].errors["available_until"])
    assert 'id="err-available_until"' in text(response)
    assert not Listing.objects.exists()


def test_the_form_refuses_a_past_window_in_chinese_too(prov, now):
    from zoneinfo import ZoneInfo

    local = now.astimezone(ZoneInfo("Asia/Shanghai"))
    window = {
        "available_from": (local - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M"),
        "available_until": (local - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
    }
    response = signed_in(prov, "zh-hans").post("/provider/listings/new/", {**LISTING_FORM, **window})
    assert response.status_code == 400
    (error,) = response.context["form"].errors["available_until"]
    assert re.search(r"[\u4e00-\u9fff]", error), error
    assert not Listing.objects.exists()


def test_the_api_refuses_a_window_wholly_past_with_a_400_naming_available_until(clients, now):
    body = {
        "region": "ningxia-zhongwei",
        "gpu_model": "h20",
        "gpu_count": 16,
        "gpus_per_node": 8,
        "price_per_gpu_hour": "5.80",
        "available_from": (now - timedelta(days=2)).isoformat(),
        "available_until": (now - timedelta(seconds=1)).isoformat(),
    }
    response = clients["provider"].post("/api/v1/listings/", body, format="json")
    assert response.status_code == 400
    assert list(response.data) == ["available_until"]
    assert not Listing.objects.exists()


def test_an_edit_that_moves_the_window_into_the_past_is_refused(clients, make_listing, now):
    listing = make_listing()
    response = clients["provider"].patch(
        f"/api/v1/listings/{listing.pk}/", {"available_until": (now - timedelta(minutes=5)).isoformat()}, format="json"
    )
    assert response.status_code == 400
    assert "available_until" in response.data
    listing.refresh_from_db()
    assert listing.available_until > now


def test_a_listing_whose_window_has_passed_shows_as_ended_with_no_actions(prov, make_listing, now):
    live = make_listing()
    over = make_listing(available_from=now - timedelta(days=3), available_until=now + timedelta(seconds=1))
    Listing.objects.filter(pk=over.pk).update(available_until=now - timedelta(hours=1))  # the sweep not yet run
    response = signed_in(prov).get("/provider/")
    assert response.context["dashboard"].gpus_listed == live.gpu_count  # the ended one counts no more
    page = text(response)
    over_row = page.split(f'id="listing-{over.pk}"')[1].split("</tr>")[0]
    live_row = page.split(f'id="listing-{live.pk}"')[1].split("</tr>")[0]
    assert "status-ended" in over_row
    assert ">ended<" in over_row.replace("\n", "")
    assert "status-active" not in over_row
    assert "Withdraw" not in over_row
    assert "status-active" in live_row
    assert "Withdraw" in live_row


# --- problem 14 and the page's format ---------------------------------------------------------


def test_the_dashboard_speaks_chinese_with_yuan_cst_and_local_names(prov, make_listing, make_request, now):
    listing = make_listing(price_per_gpu_hour=Decimal("6.5"))
    reserve(listing, make_request(gpus_per_replica=8, replicas=1), now)
    page = text(signed_in(prov, "zh-hans").get("/provider/"))
    title = re.search(r"<title>(.*?)</title>", page, re.S)[1]
    assert title == "我的挂牌 · 算力市场"
    assert "¥6.50/卡·时" in page
    assert "北京时间" in page
    assert "宁夏" in page  # the region's Chinese name
    assert "ningxia-zhongwei" not in page.replace(f'id="listing-{listing.pk}"', "")
    assert ">h20<" not in page
    english = text(signed_in(prov).get("/provider/"))
    assert "¥6.50/GPU·h" in english
    assert cst(listing.available_until) in english
    assert "6.5000" not in english


def test_every_listing_cell_is_labelled_for_the_phone_cards(prov, make_listing):
    make_listing()
    page = text(signed_in(prov).get("/provider/"))
    row = page.split('id="listing-')[1].split("</tr>")[0]
    cells = re.findall(r"<td([^>]*)>", row)
    assert all("data-label" in attrs or "actions" in attrs for attrs in cells), cells


# --- withdraw, confirmed ------------------------------------------------------------------------


def test_withdraw_asks_first_and_says_how_many_live_matches_move(prov, make_listing, make_request, now):
    listing = make_listing(gpu_count=24)
    reserve(listing, make_request(gpus_per_replica=8, replicas=1), now, nodes=(0,))
    reserve(listing, make_request(gpus_per_replica=8, replicas=1), now, nodes=(1,))
    client = signed_in(prov)
    dashboard = text(client.get("/provider/"))
    assert f'href="/provider/listings/{listing.pk}/withdraw/"' in dashboard
    confirm = client.get(f"/provider/listings/{listing.pk}/withdraw/")
    assert confirm.status_code == 200
    assert "2 live matches will move to other capacity" in text(confirm)
    listing.refresh_from_db()
    assert listing.status == Listing.Status.ACTIVE  # asking changed nothing
    assert client.post(f"/provider/listings/{listing.pk}/withdraw/")["Location"] == "/provider/"
    listing.refresh_from_db()
    assert listing.status == Listing.Status.WITHDRAWN
    assert not Match.objects.filter(listing=listing, status__in=Match.LIVE_STATUSES).exists()


def test_withdraw_confirmation_in_chinese_and_with_nothing_live(prov, make_listing):
    listing = make_listing()
    page = text(signed_in(prov, "zh-hans").get(f"/provider/listings/{listing.pk}/withdraw/"))
    assert "撤回" in page
    assert "No live match" not in page


def test_another_providers_listing_has_no_withdraw_page(prov, make_listing, other_provider):
    listing = make_listing(provider=other_provider)
    assert signed_in(prov).get(f"/provider/listings/{listing.pk}/withdraw/").status_code == 404


# --- node-failure reports -----------------------------------------------------------------------


def test_a_failure_report_says_what_will_happen_then_fails_the_node_over(prov, make_listing, make_request, now):
    listing = make_listing(gpu_count=32)
    on_three = [reserve(listing, make_request(gpus_per_replica=4, replicas=1), now, nodes=(3,)) for _ in range(2)]
    elsewhere = reserve(listing, make_request(gpus_per_replica=8, replicas=1), now, nodes=(1,))
    client = signed_in(prov)
    url = f"/provider/listings/{listing.pk}/failed-nodes/"
    assert client.get(url).status_code == 200
    confirm = client.post(url, {"nodes": "3"})
    assert confirm.status_code == 200
    assert "2 matches on node 3 will fail over to other capacity." in text(confirm)
    listing.refresh_from_db()
    assert listing.failed_nodes == []  # the first step only asks
    assert client.post(url, {"nodes": "3", "confirm": "yes"})["Location"] == "/provider/"
    listing.refresh_from_db()
    assert listing.failed_nodes == [3]
    statuses = dict(Match.objects.values_list("pk", "status"))
    assert [statuses[m.pk] for plan in on_three for m in plan.matches] == ["failed", "failed"]
    assert [statuses[m.pk] for m in elsewhere.matches] == ["reserved"]


@pytest.mark.parametrize(("nodes", "message"), [("9", "Nodes are numbered 0 to 1"), ("x", "digits 0-9")])
def test_a_failure_report_naming_no_such_node_is_refused_beside_the_field(prov, make_listing, nodes, message):
    listing = make_listing(gpu_count=16)
    url = f"/provider/listings/{listing.pk}/failed-nodes/"
    response = signed_in(prov).post(url, {"nodes": nodes, "confirm": "yes"})
    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors["nodes"])
    listing.refresh_from_db()
    assert listing.failed_nodes == []


# --- promotions ---------------------------------------------------------------------------------


def promotion_form(now, **changes):
    from zoneinfo import ZoneInfo

    until = (now + timedelta(days=30)).astimezone(ZoneInfo("Asia/Shanghai"))
    return {
        "name": "Ningxia spring offer",
        "kind": "percent",
        "percent": "20",
        "budget": "5000",
        "valid_until": until.strftime("%Y-%m-%dT%H:%M"),
        **changes,
    }


def test_a_provider_creates_a_promotion_and_sees_its_spend(prov, provider, make_listing, make_request, now):
    client = signed_in(prov)
    assert client.post("/provider/promotions/", promotion_form(now))["Location"] == "/provider/promotions/"
    program = VoucherProgram.objects.get()
    assert (program.sponsor_provider, program.sponsor, program.percent) == (provider, provider.name, Decimal("20"))
    voucher = services.vouchers_issue(program_id=program.pk, sponsor_provider=provider)[0]
    make_listing(price_per_gpu_hour=Decimal("6.00"))
    buyer_request = make_request(gpus_per_replica=8, replicas=1, voucher_code=voucher.code)
    round_run(shard="h20", trigger="manual")
    assert Match.objects.filter(request=buyer_request).exists()
    program.refresh_from_db()
    spent = program.budget - program.remaining_budget
    assert spent > 0
    page = text(client.get("/provider/promotions/"))
    assert "Ningxia spring offer" in page
    assert f"¥{spent:,.2f}" in page
    assert "20% of rent" in page


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"percent": ""}, "percent"), ({"valid_until": ""}, "valid_until"), ({"budget": "-1"}, "budget")],
)
def test_a_promotion_with_bad_terms_is_refused_beside_the_field(prov, now, changes, field):
    response = signed_in(prov).post("/provider/promotions/", promotion_form(now, **changes))
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not VoucherProgram.objects.exists()


def test_the_promotions_page_in_chinese(prov):
    page = text(signed_in(prov, "zh-hans").get("/provider/promotions/"))
    assert "推广" in re.search(r"<title>(.*?)</title>", page, re.S)[1]


# --- the monitor --------------------------------------------------------------------------------


def test_the_monitor_shows_what_the_buyer_pays_and_names_the_engine_score(
    staff, make_listing, make_request, buyer, now
):
    program = services.voucher_program_create(
        name="Shanghai compute voucher",
        sponsor="Shanghai municipal government",
        budget=Decimal("100000"),
        percent=Decimal("30"),
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=90),
    )
    voucher = services.vouchers_issue(program_id=program.pk, sponsor_provider=None, buyer=buyer)[0]
    make_listing(price_per_gpu_hour=Decimal("6.00"))
    make_request(gpus_per_replica=8, replicas=1, voucher_code=voucher.code)
    round_run(shard="h20", trigger="manual")
    match = Match.objects.get()
    assert match.subsidy_per_gpu_hour > 0
    assert match.cost_per_gpu_hour != match.price_per_gpu_hour
    client = signed_in(staff)
    live = text(client.get("/monitor/live/"))
    row = live.split(f'data-match="{match.pk}"')[1].split("</tr>")[0]
    pays = cny_per_gpu_hour(match.price_per_gpu_hour - match.subsidy_per_gpu_hour)
    assert re.search(r'class="num buyer-pays">' + re.escape(pays), row)
    assert "Buyer pays" in live
    assert "Engine score" in live
    assert cst(match.created_at) in row
    charts = json.loads(client.get("/monitor/charts.json").content)
    assert charts["avg_price"]["matched"]["ningxia-zhongwei"] == str(
        (match.price_per_gpu_hour - match.subsidy_per_gpu_hour).quantize(Decimal("0.01"))
    )
    chinese = text(signed_in(staff, "zh-hans").get("/monitor/"))
    assert "北京时间" in chinese
    assert "买方实付" in chinese


def test_the_monitor_charts_carry_utc_instants_local_region_names_and_a_cst_axis(staff, make_listing):
    make_listing()
    data = json.loads(signed_in(staff, "zh-hans").get("/monitor/charts.json").content)
    assert len(data["times"]) == len(data["labels"])
    assert all(t.endswith("Z") for t in data["times"])
    assert "宁夏" in data["region_names"]["ningxia-zhongwei"]
    page = text(signed_in(staff, "zh-hans").get("/monitor/"))
    assert 'data-time-axis="时间（北京时间）"' in page
    assert 'data-time-axis="Time (CST)"' in text(signed_in(staff).get("/monitor/"))


def test_a_paused_promotion_subsidises_no_new_match_until_resumed(prov, provider, make_listing, make_request, now):
    client = signed_in(prov)
    client.post("/provider/promotions/", promotion_form(now))
    program = VoucherProgram.objects.get()
    voucher = services.vouchers_issue(program_id=program.pk, sponsor_provider=provider)[0]
    assert client.post(f"/provider/promotions/{program.pk}/pause/", {"paused": "true"}).status_code == 302
    program.refresh_from_db()
    assert program.paused
    assert "paused" in text(client.get("/provider/promotions/"))
    make_listing(price_per_gpu_hour=Decimal("6.00"))
    make_request(gpus_per_replica=8, replicas=1, voucher_code=voucher.code)
    round_run(shard="h20", trigger="manual")
    (paused_match,) = Match.objects.all()
    assert paused_match.subsidy_per_gpu_hour == 0
    program.refresh_from_db()
    assert program.remaining_budget == program.budget
    client.post(f"/provider/promotions/{program.pk}/pause/", {"paused": "false"})
    program.refresh_from_db()
    assert not program.paused
    make_request(gpus_per_replica=8, replicas=1, voucher_code=voucher.code)
    round_run(shard="h20", trigger="manual")
    assert Match.objects.exclude(pk=paused_match.pk).get().subsidy_per_gpu_hour > 0


def test_another_providers_promotion_cannot_be_paused(prov, other_provider, now):
    program = services.voucher_program_create(
        name="Ulanqab offer",
        sponsor_provider=other_provider,
        budget=Decimal("1000"),
        percent=Decimal("10"),
        valid_from=now,
        valid_until=now + timedelta(days=10),
    )
    assert signed_in(prov).post(f"/provider/promotions/{program.pk}/pause/", {"paused": "true"}).status_code == 404
    program.refresh_from_db()
    assert not program.paused


def test_the_api_pauses_and_resumes_a_promotion(clients, provider, now):
    until = (now + timedelta(days=9)).isoformat()
    body = {"name": "API offer", "percent": "10", "budget": "1000", "valid_until": until}
    created = clients["provider"].post("/api/v1/voucher-programs/", body, format="json")
    assert created.status_code == 201
    assert created.data["paused"] is False
    url = f"/api/v1/voucher-programs/{created.data['id']}/"
    assert clients["provider"].patch(url, {"paused": True}, format="json").data["paused"] is True
    assert clients["provider"].patch(url, {"paused": "maybe"}, format="json").status_code == 400
    assert clients["provider"].patch(url, {"paused": False}, format="json").data["paused"] is False


@pytest.mark.parametrize("url", ["/provider/promotions/", "withdraw", "failed-nodes"])
def test_the_new_pages_cost_a_constant_number_of_queries(prov, provider, make_listing, make_request, now, url):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    listing = make_listing(gpu_count=64)
    path = url if url.startswith("/") else f"/provider/listings/{listing.pk}/{url}/"
    client = signed_in(prov)

    def grow(n, start):
        for k in range(start, start + n):
            reserve(listing, make_request(gpus_per_replica=8, replicas=1), now, nodes=(k,))
            services.voucher_program_create(
                name=f"Offer {k}",
                sponsor_provider=provider,
                budget=Decimal("100"),
                percent=Decimal("5"),
                valid_from=now,
                valid_until=now + timedelta(days=5),
            )

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client.post(path, {"nodes": "0, 1, 2"}) if url == "failed-nodes" else client.get(path)
            assert response.status_code == 200
        return len(captured)

    grow(1, 0)
    few = queries()
    grow(4, 1)
    assert queries() == few


def test_the_monitor_names_latency_classes_and_triggers_in_chinese(staff, make_listing, make_request):
    make_listing(region="ningxia-zhongwei")
    make_request(latency_class="realtime")
    round_run(shard="h20", trigger="manual")
    client = signed_in(staff, "zh-hans")
    assert "· 实时" in text(client.get("/monitor/unserved/"))
    live = text(client.get("/monitor/live/"))
    assert re.search(r"<small>\s*手动\s*</small>", live)
    assert not re.search(r"<small>\s*manual\s*</small>", live)
