"""Fixtures of the page tests: a headless Chromium for the browser tests (tests/web/browsing.py)."""

from __future__ import annotations

import os

import pytest

from tests.conftest import need_service
from tests.web.browsing import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, VENDOR


@pytest.fixture
def browser(monkeypatch):
    """A headless Chromium; Playwright's sync API runs an event loop in this thread, so Django's
    guard against ORM calls from async code is lifted for the test (the ORM calls stay sync)."""
    if not os.access(CHROMIUM, os.X_OK):
        need_service(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)")
    missing = [name for name in ("htmx.min.js", "chart.umd.min.js") if not (VENDOR / name).exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing from {VENDOR}: run `make assets`")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()
