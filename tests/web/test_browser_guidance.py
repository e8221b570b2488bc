"""The Guidance panel in a real browser: folded under an idle listing, loaded by htmx when opened
(under the strict CSP), in English and Chinese, at a desktop and a phone, without horizontal overflow.
Screenshots: artifacts/screenshots/provider-guidance-<desktop|phone>-<en|zh>.png."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.conftest import member
from tests.web.browsing import DESKTOP, PHONE, Session

VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}
WORDS = {
    "en": {"price": "¥5.20/GPU·h", "reason": "Demand within reach is capped at ¥5.20, your price is ¥5.80."},
    "zh": {"price": "¥5.20/卡·时", "reason": "可达需求的最高出价为 ¥5.20，您的价格为 ¥5.80。"},
}


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_the_guidance_panel_loads_when_opened(
    browser, live_server, reference, provider, make_listing, make_request, size, lang
):
    from playwright.sync_api import expect

    member("prov", provider)
    listing = make_listing(price_per_gpu_hour=Decimal("5.80"))
    make_request(latency_class="batch", max_price_per_gpu_hour=Decimal("5.20"), replicas=2, duration_hours=10)
    session = Session(browser, live_server.url, lang=lang, **VIEWPORTS[size])
    session.sign_in("prov")
    page = session.page
    page.goto("/provider/")
    row = page.locator(f"#guidance-{listing.pk}")
    row.locator("summary").click()
    panel = row.locator(".guidance-panel")
    expect(panel).to_contain_text(WORDS[lang]["price"], timeout=10000)
    expect(panel).to_contain_text(WORDS[lang]["reason"])
    session.assert_no_overflow()
    session.shot(f"provider-guidance-{size}-{lang}")
    assert not session.problems, "\n".join(session.problems)
