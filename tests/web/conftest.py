"""Fixtures of the page tests: page clients by role, and a headless Chromium for the browser tests
(tests/web/browsing.py)."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.conftest import member, need_service
from tests.web.browsing import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, VENDOR


def signed_in(user) -> Client:
    """A page client signed in as ``user``."""
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def web(reference, provider, buyer):
    """Page clients by role: a provider's and a buyer's members, staff, and anonymous."""
    staff = get_user_model().objects.create_user(username="staff", password="pw-for-tests-1", is_staff=True)
    return {
        "provider": signed_in(member("prov", provider)),
        "buyer": signed_in(member("buy", buyer)),
        "staff": signed_in(staff),
        "anonymous": Client(),
    }


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
