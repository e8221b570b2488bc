"""The shared browser harness: Debian's headless Chromium driven by Playwright against the test
run's live server (the ``browser`` fixture is in tests/web/conftest.py).

A :class:`Session` is one user's browser context in one language at one viewport; it records console
errors and Content-Security-Policy violations, can assert that the page has no horizontal overflow,
and saves full-page screenshots under artifacts/screenshots/ for review.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(settings.BASE_DIR) / "artifacts" / "screenshots"
VENDOR = Path(settings.BASE_DIR) / "marketplace" / "static" / "vendor"
PASSWORD = "pw-for-tests-1"
EXPECTED_400 = "the server responded with a status of 400 (Bad Request)"
#: The two viewports every journey runs at: a desktop and a phone (issue 18).
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
#: Browser locales: the Accept-Language a visitor's browser sends.
LOCALES = {"en": "en-GB", "zh": "zh-CN"}


class Session:
    """One user's browser context, recording console errors and CSP violations.

    ``lang`` ("en" or "zh") sets the browser's language, hence the Accept-Language it sends.
    """

    def __init__(self, browser, base_url: str, lang: str = "en", **context_options):
        context_options.setdefault("locale", LOCALES[lang])
        self.lang = lang
        self.context = browser.new_context(base_url=base_url, **context_options)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _console(self, message) -> None:
        if EXPECTED_400 in message.text:  # a form page answers invalid input with 400, by design
            return
        if message.type == "error" or "Content Security Policy" in message.text:
            self.problems.append(f"console {message.type} on {self.page.url}: {message.text}")

    def sign_in(self, username: str) -> None:
        """Signs in through the form, whatever the page's language."""
        self.page.goto("/signin/")
        self.page.locator("#id_username").fill(username)
        self.page.locator("#id_password").fill(PASSWORD)
        self.page.locator("main form button[type=submit]").click()
        self.page.wait_for_load_state()

    def overflow(self) -> int:
        """How many CSS pixels the page is wider than the viewport (0: no horizontal scrolling)."""
        return int(self.page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth"))

    def assert_no_overflow(self) -> None:
        over = self.overflow()
        assert over <= 0, f"{self.page.url} is {over} px wider than the viewport"

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
