"""A forged X-Forwarded-For does not give a client a fresh throttle bucket (NUM_PROXIES=0)."""

from __future__ import annotations

from rest_framework.test import APIClient

from tests.marketplace.test_api import low_rates  # noqa: F401  (fixture)


def test_a_forged_forwarded_for_does_not_dodge_the_login_limit(clients, low_rates):  # noqa: F811
    codes = [
        APIClient()
        .post("/api/v1/auth/token/", {"username": "buy", "password": "guess"}, HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
        .status_code
        for n in range(3)
    ]
    assert codes == [400, 400, 429]


def test_a_forged_forwarded_for_does_not_dodge_the_anonymous_limit(reference, low_rates):  # noqa: F811
    codes = [APIClient().get("/api/v1/regions/", HTTP_X_FORWARDED_FOR=f"10.0.1.{n}").status_code for n in range(4)]
    assert codes == [200, 200, 200, 429]
