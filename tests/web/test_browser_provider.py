"""The provider's pages and the match monitor in a real browser (issue 18), at a desktop and a
phone, in English and in Chinese: the dashboard with listings and no horizontal overflow at 390 px,
a listing form refusing a window wholly in the past, the withdraw confirmation, the promotions
page (pausing one), a node-failure report's confirmation, and the monitor with its charts drawn in CST. No
console errors or CSP violations; screenshots under artifacts/screenshots/."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from marketplace import services
from marketplace.models import Listing
from tests.conftest import member
from tests.services_helpers import reserve
from tests.web.browsing import DESKTOP, PASSWORD, PHONE, Session

VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}
#: What each language's pages say, for the checks below.
WORDS = {
    "en": {
        "title": "My listings · GPU marketplace",
        "past": "Must be in the future",
        "withdraw": "Withdraw",
        "moves": "2 live matches will move to other capacity",
        "fail_over": "1 match on node 1 will fail over to other capacity.",
        "report": "Report failed nodes",
        "price": "¥6.50/GPU·h",
        "zone": "CST",
        "promotion": "Desert launch offer",
        "pause": "Pause",
        "paused": "paused",
        "axis": "Time (CST)",
    },
    "zh": {
        "title": "我的挂牌 · 算力市场",
        "past": "须为将来的时间",
        "withdraw": "撤回",
        "moves": "2 个进行中的撮合将迁移到其他算力",
        "fail_over": "节点 1 上的 1 个撮合将故障转移到其他算力。",
        "report": "上报故障节点",
        "price": "¥6.50/卡·时",
        "zone": "北京时间",
        "promotion": "Desert launch offer",
        "pause": "暂停",
        "paused": "已暂停",
        "axis": "时间（北京时间）",
    },
}


@pytest.fixture
def market(reference, provider, buyer, make_listing, make_request):
    """A provider with one listing carrying two live matches (nodes 0 and 1), one promotion with
    spend, and a staff user for the monitor."""
    now = timezone.now()
    get_user_model().objects.create_user(username="admin", password=PASSWORD, is_staff=True)
    member("prov", provider)
    listing = make_listing(gpu_count=24, price_per_gpu_hour=Decimal("6.50"))
    for node in (0, 1):
        reserve(listing, make_request(gpus_per_replica=8, replicas=1), now, nodes=(node,))
    services.voucher_program_create(
        name="Desert launch offer",
        sponsor_provider=provider,
        budget=Decimal("5000"),
        percent=Decimal("15"),
        valid_from=now - timedelta(hours=1),
        valid_until=now + timedelta(days=60),
    )
    return {"listing": listing, "now": now}


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_provider_pages_and_monitor(browser, live_server, market, size, lang):
    from playwright.sync_api import expect

    words, listing = WORDS[lang], market["listing"]
    suffix = f"{size}-{lang}"
    provider = Session(browser, live_server.url, lang=lang, **VIEWPORTS[size])
    provider.sign_in("prov")
    page = provider.page

    # The dashboard: localised, ¥ with two decimals, CST, no horizontal overflow on a phone.
    page.goto("/provider/")
    expect(page).to_have_title(words["title"])
    row = page.locator(f"#listing-{listing.pk}")
    expect(row).to_contain_text(words["price"])
    expect(row).to_contain_text(words["zone"])
    provider.assert_no_overflow()
    provider.shot(f"provider-dashboard-{suffix}")

    # A listing form whose whole window is in the past is refused beside "available until".
    local = market["now"].astimezone(ZoneInfo("Asia/Shanghai"))
    page.goto("/provider/listings/new/")
    page.locator("#id_region").select_option("ningxia-zhongwei")
    page.locator("#id_gpu_model").select_option("h20")
    page.locator("#id_gpu_count").fill("16")
    page.locator("#id_gpus_per_node").select_option("8")
    page.locator("#id_price_per_gpu_hour").fill("5.80")
    page.locator("#id_available_from").fill((local - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M"))
    page.locator("#id_available_until").fill((local - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"))
    page.locator("main form button[type=submit]").click()
    expect(page.locator("#err-available_until")).to_contain_text(words["past"])
    assert Listing.objects.count() == 1
    provider.assert_no_overflow()
    provider.shot(f"provider-listing-form-{suffix}")

    # Withdraw asks first, saying how many live matches will move; keeping it changes nothing.
    page.goto("/provider/")
    row.get_by_role("link", name=re.compile(words["withdraw"])).click()
    expect(page.locator("#withdraw-consequence")).to_contain_text(words["moves"])
    provider.assert_no_overflow()
    provider.shot(f"provider-withdraw-confirm-{suffix}")
    page.locator("main form a").first.click()
    expect(page).to_have_url(re.compile(r"/provider/$"))
    listing.refresh_from_db()
    assert listing.status == Listing.Status.ACTIVE

    # The promotions page: the provider's promotion with its spend, and the form for a new one.
    page.goto("/provider/promotions/")
    expect(page.locator("#programs-table")).to_contain_text(words["promotion"])
    expect(page.locator("#id_name")).to_be_visible()
    provider.assert_no_overflow()
    provider.shot(f"provider-promotions-{suffix}")
    page.locator("#programs-table").get_by_role("button", name=re.compile(words["pause"])).click()
    expect(page.locator("#programs-table .status-paused")).to_have_text(words["paused"])

    # A node-failure report: the confirmation says what will happen before anything does.
    page.goto("/provider/")
    row.get_by_role("link", name=re.compile(words["report"])).click()
    page.locator("#id_nodes").fill("1")
    page.locator("main form button[type=submit]").click()
    expect(page.locator("#failure-consequence")).to_have_text(words["fail_over"])
    listing.refresh_from_db()
    assert listing.failed_nodes == []
    provider.assert_no_overflow()
    provider.shot(f"provider-failure-report-{suffix}")

    # The monitor: what buyers pay, times in CST, the charts drawn with the page's axis label.
    staff = Session(browser, live_server.url, lang=lang, **VIEWPORTS[size])
    staff.sign_in("admin")
    staff.page.goto("/monitor/")
    expect(staff.page.locator("#feed-matches td.buyer-pays").first).to_contain_text(words["price"])
    expect(staff.page.locator("#feed-matches time").first).to_contain_text(words["zone"])
    expect(staff.page.locator("#charts")).to_have_attribute("data-updated-at", re.compile(r"\d"), timeout=8000)
    axis = staff.page.evaluate("Chart.getChart('chart-series').options.scales.x.title.text")
    assert axis == words["axis"]
    staff.assert_no_overflow()
    staff.shot(f"monitor-{suffix}")

    problems = provider.problems + staff.problems
    assert not problems, "\n".join(problems)
