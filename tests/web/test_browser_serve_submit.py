"""Submitting a request in the inference form from "Serve a model" in a real browser, in English
and Chinese: the form posts with its CSRF token, a refusal comes back beside its field with what was
typed, and the request lands on the buyer's page with its tokens/s placed against asked. No
horizontal overflow, no console errors or CSP violations; screenshots
``buyer-serve-submitted-desktop-{en,zh}.png``."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from marketplace.models import BuyerRequest
from tests.conftest import member
from tests.web.browsing import DESKTOP, Session

WORDS = {
    "en": {"placed": "0 of 2,000 output tokens/s placed", "ttft": "TTFT p95 ≤ 1,500 ms"},
    # Chinese pages group no thousands (Django's zh-hans number format), as the quote panel's figures.
    "zh": {"placed": "已放置 0 / 2000 输出 token/秒", "ttft": "首 token 时延 p95 ≤ 1500 毫秒"},
}


@pytest.fixture
def market(reference, buyer, make_listing):
    member("buy", buyer)
    make_listing(region="yrd-qingpu-wujiang-jiashan", gpu_model="h100", price_per_gpu_hour=Decimal("13"))
    make_listing(region="ningxia-zhongwei", gpu_model="h20", price_per_gpu_hour=Decimal("6"))


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_serve_a_model_submits_the_request_and_shows_it_placed_against_asked(browser, live_server, market, lang):
    from playwright.sync_api import expect

    buyer = Session(browser, live_server.url, lang=lang, **DESKTOP)
    buyer.sign_in("buy")
    page = buyer.page
    page.goto("/buyer/serve/")
    page.locator("#id_precision").select_option("FP8")
    page.locator("#id_max_price_per_million_tokens").fill("20")
    expect(page.locator('#serve-quote [data-paid="per-mtok"]')).to_have_text("¥1.67")

    # Refused: the TTFT no placement reaches comes back beside its field, the rest as typed.
    page.locator("#id_ttft_p95_ms").fill("5")
    page.locator("#serve-submit").click()
    expect(page).to_have_url(re.compile(r"/buyer/serve/$"))
    expect(page.locator("#id_max_price_per_million_tokens")).to_have_value("20")
    expect(page.locator("#serve-form")).to_contain_text("shanghai")
    assert not BuyerRequest.objects.exists()

    page.locator("#id_ttft_p95_ms").fill("1500")
    page.locator("#serve-submit").click()
    expect(page).to_have_url(re.compile(r"/buyer/#request-\d+$"))
    request = BuyerRequest.objects.get()
    card = page.locator(f"#request-{request.pk}")
    expect(card).to_contain_text("DeepSeek-R1-Distill-Qwen-32B")
    expect(card.locator(".placed-vs-asked")).to_have_text(WORDS[lang]["placed"])
    expect(card).to_contain_text(WORDS[lang]["ttft"])
    assert request.kind == "inference"
    buyer.assert_no_overflow()
    buyer.shot(f"buyer-serve-submitted-desktop-{lang}")
    assert not buyer.problems, "\n".join(buyer.problems)
