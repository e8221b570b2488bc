"""The buyer's journey in a real browser, at a desktop and a phone, in English and Chinese: the
request form waits for input before it complains and shows the live quote (above Submit on a
phone), the request is submitted, a round places it and the match appears on the dashboard
without a reload (htmx polling), cancelling asks first and says what will happen, and the
statements page shows the month with its CSV. No horizontal overflow, no console errors or CSP
violations; screenshots ``buyer-{request-form,dashboard,statements}-{desktop,phone}-{en,zh}.png``.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from marketplace import services
from marketplace.models import BuyerRequest, GpuModel, Match, Region
from marketplace.services.rounds import round_run
from tests.conftest import member
from tests.web.browsing import DESKTOP, PHONE, Session

#: The dashboard polls every 3 s: a match must show within this many milliseconds.
LIVE_WITHIN_MS = 8000
WORDS = {
    "en": {
        "placed": "2 of 2 replicas",
        "score": "Engine score (price + latency weight)",
        "pays": "You pay",
        "will_stop": "1 running match will stop and be settled for the hours it ran.",
        "cancelled": "cancelled",
        "statement": "statement for",
    },
    "zh": {
        "placed": "2 个副本中的 2 个",
        "score": "引擎评分（价格 + 时延权重）",
        "pays": "您支付",
        "will_stop": "1 个运行中的撮合将停止，并按已运行时长结算。",
        "cancelled": "已取消",
        "statement": "结算单",
    },
}


@pytest.fixture
def market(reference, provider, buyer, now):
    from datetime import timedelta

    member("buy", buyer)
    services.listing_create(
        provider=provider,
        region=Region.objects.get(code="ningxia-zhongwei"),
        gpu_model=GpuModel.objects.get(code="h20"),
        gpu_count=16,
        gpus_per_node=8,
        price_per_gpu_hour=Decimal("5.80"),
        available_from=now - timedelta(hours=1),
        available_until=now + timedelta(days=30),
    )


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize(("device", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_buyer_quotes_submits_sees_the_match_live_cancels_and_reads_statements(
    browser, live_server, market, lang, device, viewport
):
    from playwright.sync_api import expect

    words = WORDS[lang]
    buyer = Session(browser, live_server.url, lang=lang, **viewport)
    buyer.sign_in("buy")
    page = buyer.page

    # The form: nothing flagged before typing; the quote above Submit on a phone.
    page.goto("/buyer/requests/new/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hans" if lang == "zh" else "en")
    expect(page.locator("#quote-missing")).to_be_visible()
    for field in ("max_price_per_gpu_hour", "replicas", "duration_hours"):
        expect(page.locator(f"#err-{field}")).to_have_text("")
    page.locator("#id_gpu_model").select_option("h20")
    page.locator("#id_gpus_per_replica").select_option("2")
    page.locator("#id_replicas").fill("2")
    page.locator("#id_latency_class").select_option("standard")
    page.locator("#id_max_price_per_gpu_hour").fill("9")
    quote = page.locator("#quote")
    expect(quote).to_contain_text(words["placed"])
    expect(quote).to_contain_text(words["score"])
    expect(quote.locator('[data-paid="quote-total"]')).to_have_text("¥556.80")  # 4 GPUs × 24 h × 5.80
    expect(quote).not_to_contain_text("ningxia-zhongwei")
    submit = page.locator("#request-form button[type=submit]")
    if device == "phone":
        assert quote.bounding_box()["y"] < submit.bounding_box()["y"], "the quote must sit above Submit"
        assert quote.bounding_box()["y"] < viewport["viewport"]["height"], "the quote must start above the fold"
    buyer.assert_no_overflow()
    buyer.shot(f"buyer-request-form-{device}-{lang}")
    submit.click()
    expect(page).to_have_url(re.compile(r"/buyer/$"))
    request = BuyerRequest.objects.get()
    card = page.locator(f"#request-{request.pk}")
    expect(card).to_be_visible()

    # A round places it; the match appears without a reload.
    page.evaluate("window.__notReloaded = true")
    round_run(shard="h20", trigger="manual")
    match = Match.objects.get()
    expect(page.locator(f"#match-{match.pk}")).to_be_visible(timeout=LIVE_WITHIN_MS)
    assert page.evaluate("window.__notReloaded") is True
    expect(page.locator(f"#match-{match.pk}")).to_contain_text(words["pays"])
    expect(page.locator(f'#match-{match.pk} [data-paid="total"]')).to_have_text("¥556.80")
    buyer.assert_no_overflow()
    buyer.shot(f"buyer-dashboard-{device}-{lang}")

    # Cancelling asks first and says what will happen.
    card.locator(f'a[href="/buyer/requests/{request.pk}/cancel/"]').click()
    expect(page.locator("#cancel-confirm")).to_contain_text(words["will_stop"])
    buyer.assert_no_overflow()
    buyer.shot(f"buyer-cancel-confirm-{device}-{lang}")
    request.refresh_from_db()
    assert request.status == BuyerRequest.Status.MATCHED
    page.locator("#cancel-confirm button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/buyer/$"))
    expect(page.locator(f"#request-{request.pk} .badge").first).to_have_text(words["cancelled"])
    request.refresh_from_db()
    assert request.status == BuyerRequest.Status.CANCELLED

    # Statements: the month with its line and the CSV download.
    page.goto("/statements/")
    expect(page.locator("h1")).to_contain_text(words["statement"])
    expect(page.locator("#statement-lines")).to_contain_text(f"#{match.pk}")
    buyer.assert_no_overflow()
    buyer.shot(f"buyer-statements-{device}-{lang}")
    if device == "desktop":
        with page.expect_download() as download:
            page.locator("#statement-csv").click()
        assert download.value.suggested_filename.startswith("statement-")

    assert not buyer.problems, "\n".join(buyer.problems)
