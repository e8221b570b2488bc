"""The account pages in a real browser, at a desktop and a phone, in English and Chinese: sign-up
states the password rules before a submit and shows several refusals at once, with radio buttons
on the line of their labels; sign-in leads to the password reset; the organisation page; our 404
page. No page scrolls sideways, and none logs a console error or CSP violation.

Screenshots: artifacts/screenshots/account-{signup,signin,password-reset,organisation,404}-{desktop,phone}-{en,zh}.png.
"""

from __future__ import annotations

import re

import pytest

from marketplace import services
from marketplace.models import Membership
from tests.conftest import member
from tests.web.browsing import DESKTOP, PHONE, Session

TEXTS = {
    "en": {"rule": "at least 8 characters", "create": "Create account", "forgot": "Forgot password?",
           "reset": "Reset your password", "members": "Members", "not_found": "Page not found", "zone": "CST"},
    "zh": {"rule": "至少 8 个字符", "create": "创建账号", "forgot": "忘记密码？",
           "reset": "重置密码", "members": "成员", "not_found": "页面不存在", "zone": "北京时间"},
}  # fmt: skip

#: Each radio button's middle and the middle of its label's first line, at most this far apart (px).
RADIO_ALIGNMENT_PX = 4
RADIO_OFFSETS = """() => [...document.querySelectorAll('label.radio')].map(label => {
  const input = label.querySelector('input').getBoundingClientRect();
  const line = label.querySelector('span').getClientRects()[0];
  return {dy: Math.abs((input.top + input.bottom) / 2 - (line.top + line.bottom) / 2),
          before: input.right <= line.left + 1};
})"""


@pytest.fixture
def owner(reference, buyer):
    user = member("owner-li", buyer, email="owner@example.com")
    user.membership.role = Membership.Role.OWNER
    user.membership.save()
    services.api_key_create(organisation=buyer, user=user, name="deploy bot", scopes=["read", "trade"])
    return user


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize(("size", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_account_pages(browser, live_server, owner, size, viewport, lang):
    from playwright.sync_api import expect

    said = TEXTS[lang]
    session = Session(browser, live_server.url, lang=lang, **viewport)
    page = session.page

    def check(name: str) -> None:
        session.assert_no_overflow()
        session.shot(f"account-{name}-{size}-{lang}")

    # Sign-up: the password rules show before anything is typed, and no error does.
    page.goto("/signup/")
    expect(page.locator("#id_password_helptext")).to_be_visible()
    expect(page.locator("#id_password_helptext")).to_contain_text(said["rule"])
    expect(page.locator(".field .error:visible")).to_have_count(0)
    for offset in page.evaluate(RADIO_OFFSETS):
        assert offset["before"], "the radio button is on its label's line, before the text"
        assert offset["dy"] <= RADIO_ALIGNMENT_PX, offset
    # Several refusals on one submit: markup in the name, a bad address, a weak password.
    page.locator("#id_role_1").check()
    page.locator("#id_organisation").fill("<script>alert(1)</script>")
    page.locator("#id_username").fill("new-buyer")
    page.locator("#id_email").fill("not-an-address")
    page.locator("#id_password").fill("12345678")
    page.get_by_role("button", name=said["create"]).click()
    for field in ("organisation", "email", "password"):
        expect(page.locator(f"#err-{field}")).not_to_be_empty()
    expect(page.locator("#signup-summary")).to_be_visible()
    expect(page.locator("#id_password_helptext")).to_contain_text(said["rule"])  # still stated
    check("signup")

    # Sign-in, and the way to a password reset.
    page.goto("/signin/")
    expect(page.get_by_role("link", name=said["forgot"])).to_be_visible()
    check("signin")
    page.get_by_role("link", name=said["forgot"]).click()
    expect(page).to_have_url(re.compile(r"/password/reset/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(said["reset"])
    check("password-reset")

    # The organisation page of its owner: times in CST, money in yuan.
    session.sign_in("owner-li")
    page.goto("/organisation/")
    expect(page.get_by_role("heading", name=said["members"], exact=True)).to_be_visible()
    expect(page.locator("#keys-table")).to_contain_text(said["zone"])
    expect(page.locator("#keys-table")).to_contain_text("¥0.00")
    check("organisation")

    # Our 404 page, with a way back. Chromium logs the 404 status itself: that one is expected.
    response = page.goto("/no-such-page/")
    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text(said["not_found"])
    expect(page.locator(".ways-back a").first).to_have_attribute("href", "/")
    check("404")
    problems = [
        problem
        for problem in session.problems
        if not ("/no-such-page/" in problem and "status of 404" in problem)
    ]
    assert problems == []
    session.context.close()
