"""The "Serve a model" page in a real browser, at a desktop and a phone, in English and Chinese:
the live quote arrives as the form is filled, the frontier by GPU model shows as a table and as a
chart drawn from the quote's points (Chart.js, under the strict CSP), and the chosen alternative
opens the GPU form pre-filled, whose own live quote places it. No horizontal overflow, no console
errors or CSP violations; screenshots ``buyer-serve-{desktop,phone}-{en,zh}.png``."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from tests.conftest import member
from tests.web.browsing import DESKTOP, PHONE, Session

WORDS = {
    "en": {"chosen": "chosen", "placed": "1 of 1 replicas"},
    "zh": {"chosen": "已选", "placed": "1 个副本中的 1 个"},
}


@pytest.fixture
def market(reference, buyer, make_listing):
    member("buy", buyer)
    make_listing(region="yrd-qingpu-wujiang-jiashan", gpu_model="h100", price_per_gpu_hour=Decimal("13"))
    make_listing(region="ningxia-zhongwei", gpu_model="h20", price_per_gpu_hour=Decimal("6"))


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize(("device", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_serve_a_model_quotes_charts_the_frontier_and_prefills_the_gpu_form(
    browser, live_server, market, lang, device, viewport
):
    from playwright.sync_api import expect

    buyer = Session(browser, live_server.url, lang=lang, **viewport)
    buyer.sign_in("buy")
    page = buyer.page
    page.goto("/buyer/serve/")
    expect(page.locator("#quote-missing")).to_be_visible()
    expect(page.locator("#err-max_price_per_million_tokens")).to_have_text("")
    page.locator("#id_precision").select_option("FP8")
    page.locator("#id_max_price_per_million_tokens").fill("20")
    quote = page.locator("#serve-quote")
    expect(quote.locator('[data-paid="per-mtok"]')).to_have_text("¥1.67")  # 2 H20s × 6 CNY/h ÷ 7.2 Mtok/h
    expect(page.locator('#frontier-table tr.chosen[data-gpu-model="h20"]')).to_contain_text(WORDS[lang]["chosen"])
    # (Polled here: Playwright's wait_for_function evaluates a string, which the CSP refuses.)
    drawn = None
    for _ in range(50):
        drawn = page.evaluate(
            "() => { const c = window.Chart && window.Chart.getChart('frontier-chart');"
            " return c ? c.data.datasets.map(d => d.data.map(p => [p.x, p.y])) : null; }"
        )
        if drawn:
            break
        page.wait_for_timeout(100)
    assert [len(points) for points in drawn] == [1, 1]  # the chosen H20, the H100 beside it
    assert drawn[0][0][1] == 1.6667
    assert drawn[1][0][1] == 1.8056
    buyer.assert_no_overflow()
    buyer.shot(f"buyer-serve-{device}-{lang}")

    # A bad field is named beside it; fixing it brings the quote back.
    page.locator("#id_ttft_p95_ms").fill("5")
    expect(page.locator("#err-ttft_p95_ms")).not_to_have_text("")
    page.locator("#id_ttft_p95_ms").fill("1500")
    expect(page.locator("#err-ttft_p95_ms")).to_have_text("")

    page.locator("#place-as-gpu-request").click()
    expect(page).to_have_url(re.compile(r"/buyer/requests/new/\?"))
    expect(page.locator("#id_gpu_model")).to_have_value("h20")
    expect(page.locator("#quote")).to_contain_text(WORDS[lang]["placed"])
    buyer.assert_no_overflow()
    assert not buyer.problems, "\n".join(buyer.problems)
