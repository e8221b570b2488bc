"""The pages in a real browser: Debian's headless Chromium driven by Playwright against the live
server of the test run.

The scenario: a provider lists capacity (meeting a validation message beside the field first), a
buyer watches the live quote as it types and submits a request, and the admin's match monitor,
open all along, shows the new match and its matching run without a reload. Every page is saved as
a screenshot under artifacts/screenshots/ for review; any Content-Security-Policy violation or
JavaScript error fails the test.

Chromium comes from the ``chromium`` package (``make test`` installs it when root). Without it
these tests skip, and under REQUIRE_SERVICES=1 (CI) they fail.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from marketplace.models import Listing, Match
from marketplace.services.rounds import round_run
from tests.conftest import member
from tests.web.browsing import PASSWORD, Session

#: The monitor must show a new match within this many milliseconds (it polls every second).
LIVE_WITHIN_MS = 2500


@pytest.fixture
def people(reference, provider, buyer):
    staff = get_user_model().objects.create_user(username="admin", password=PASSWORD, is_staff=True)
    return {"provider": member("prov", provider), "buyer": member("buy", buyer), "staff": staff}


def test_provider_lists_buyer_quotes_and_submits_monitor_shows_the_match_live(browser, live_server, people):
    from playwright.sync_api import expect

    sessions = []

    def session(**options) -> Session:
        sessions.append(Session(browser, live_server.url, **options))
        return sessions[-1]

    # The public capacity board, before anything is listed, then on a phone.
    visitor = session(viewport={"width": 1280, "height": 900})
    visitor.page.goto("/?origin=shanghai")
    expect(visitor.page.get_by_role("img", name="Map of idle GPUs by region")).to_be_visible()
    visitor.shot("01-board-empty")

    # The admin opens the monitor first and keeps it open.
    admin = session(viewport={"width": 1280, "height": 1000})
    admin.sign_in("admin")
    expect(admin.page).to_have_url(re.compile(r"/monitor/$"))
    admin.page.evaluate("window.__notReloaded = true")

    # A provider lists capacity; a bad GPU count is refused beside the field.
    provider = session(viewport={"width": 1280, "height": 900})
    provider.sign_in("prov")
    expect(provider.page).to_have_url(re.compile(r"/provider/$"))
    provider.page.get_by_role("link", name="List capacity").first.click()
    form = provider.page
    form.get_by_label("Region").select_option("ningxia-zhongwei")
    form.get_by_label("GPU model").select_option("h20")
    form.get_by_label("GPUs", exact=True).fill("12")
    form.get_by_label("GPUs per node").select_option("8")
    form.get_by_label("Price per GPU-hour (CNY)").fill("5.80")
    form.get_by_role("button", name="List capacity").click()
    expect(form.locator("#err-gpu_count")).to_have_text("12 GPUs do not fill whole nodes of 8.")
    provider.shot("02-provider-listing-form-error")
    form.get_by_label("GPUs", exact=True).fill("32")
    form.get_by_role("button", name="List capacity").click()
    expect(form).to_have_url(re.compile(r"/provider/$"))
    listing = Listing.objects.get()
    expect(form.locator(f"#listing-{listing.pk}")).to_contain_text("Ningxia")
    provider.shot("03-provider-dashboard-listed")

    # The board now shows the idle GPUs in Ningxia, coloured standard from Shanghai.
    visitor.page.reload()
    expect(visitor.page.locator("g.region.lc-standard circle").first).to_be_visible()
    visitor.page.get_by_label("GPU model").select_option("h20")  # htmx swaps the board in place
    expect(visitor.page).to_have_url(re.compile(r"gpu_model=h20"))
    expect(visitor.page.locator("#board")).to_contain_text("32 idle")
    visitor.shot("04-board-with-capacity")

    # A buyer sees the quote update as it fills the form, then submits.
    buyer = session(viewport={"width": 1280, "height": 1100})
    buyer.sign_in("buy")
    buyer.page.goto("/buyer/requests/new/")
    page = buyer.page
    page.get_by_label("GPU model").select_option("h20")
    page.get_by_label("GPUs per replica").select_option("2")
    page.get_by_label("Latency class").select_option("standard")
    page.get_by_label("Price cap per GPU-hour (CNY)").fill("9")
    page.get_by_label("Replicas").fill("3")
    quote = page.locator("#quote")
    expect(quote).to_contain_text("3 of 3 replicas")
    expect(quote).to_contain_text("Zhongwei cluster (Ningxia hub)")
    expect(quote).to_contain_text("Price–latency frontier")
    page.get_by_label("Latency class").select_option("realtime")
    expect(quote).to_contain_text("0 of 3 replicas")
    page.get_by_label("Max RTT (ms)").fill("20")
    expect(page.locator("#err-max_rtt_ms")).to_have_text("Give latency_class or max_rtt_ms, not both.")
    page.get_by_label("Max RTT (ms)").fill("")
    page.get_by_label("Latency class").select_option("standard")
    expect(quote).to_contain_text("3 of 3 replicas")
    expect(page.locator("#err-max_rtt_ms")).to_have_text("")
    buyer.shot("05-buyer-request-with-live-quote")
    page.get_by_role("button", name="Submit request").click()
    expect(page).to_have_url(re.compile(r"/buyer/$"))
    expect(page.locator("article.request")).to_contain_text("open")

    # The round runs (here, in the test process); the monitor shows it without a reload.
    run_id = round_run(shard="h20", trigger="manual")
    match = Match.objects.get()
    expect(admin.page.locator(f'#feed-matches tr[data-match="{match.pk}"]')).to_be_visible(timeout=LIVE_WITHIN_MS)
    expect(admin.page.locator(f'#feed-runs tr[data-run="{run_id}"]')).to_be_visible(timeout=LIVE_WITHIN_MS)
    assert admin.page.evaluate("window.__notReloaded") is True
    expect(admin.page.locator("#tile-matched")).to_have_text("6")
    expect(admin.page.locator("#west-share")).to_have_text("100% of matched GPU-hours", timeout=8000)
    admin.shot("06-admin-monitor-live-match")

    # The buyer sees the match and why it went to Ningxia; the provider its utilisation.
    page.reload()
    expect(page.locator("details.match").first).to_contain_text("Why Zhongwei cluster (Ningxia hub)")
    buyer.shot("07-buyer-requests-with-explanation")
    provider.page.reload()
    expect(provider.page.locator(f"#listing-{listing.pk}")).to_contain_text("6 matched")
    provider.shot("08-provider-dashboard-matched")

    # Sign-up and the capacity board on a phone.
    phone = session(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone.page.goto("/signup/")
    expect(phone.page.get_by_label("Organisation")).to_be_visible()
    phone.shot("09-signup-mobile")
    phone.page.goto("/?origin=beijing")
    phone.shot("10-board-mobile")

    problems = [problem for s in sessions for problem in s.problems]
    assert not problems, "\n".join(problems)
