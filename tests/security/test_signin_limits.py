"""Sign-in limits: guessing passwords at the web sign-in, the admin login or the token endpoint
locks the username (from every address) and the address (for every username) until the cool-off,
with one answer for existing and unknown usernames and no password hashed once locked; sign-ups
from one address are throttled on the page and the API together.

The test settings make the limit unreachable for the rest of the suite; here it is ``LIMIT``.
Lock-outs are database rows (axes' database handler), rolled back after each test.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import MD5PasswordHasher
from django.core.management import call_command
from django.db import connection
from django.db.models import F, Sum
from django.test import Client
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from marketplace.account_limits import lockout_message
from tests.security.figures import FIGURES

LIMIT = 3
PASSWORD = "pw-for-tests-1"
ADDRESS, OTHER_ADDRESS = "198.51.100.7", "198.51.100.8"
#: The two sign-in pages: (path, where a successful sign-in goes).
DOORS = {"web": ("/signin/", "/me/"), "admin": ("/admin/login/?next=/admin/", "/admin/")}


class CountingHasher(MD5PasswordHasher):
    """The test settings' hasher, counting the passwords it hashes (a check hashes the candidate)."""

    hashed = 0
    counting = threading.Lock()

    def encode(self, password, salt):
        with CountingHasher.counting:
            CountingHasher.hashed += 1
        return super().encode(password, salt)


@pytest.fixture(autouse=True)
def limits(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher"]


@pytest.fixture
def li(db):
    """A staff user, so that both doors (the sign-in page and the admin) let it in."""
    return get_user_model().objects.create_user(username="li", password=PASSWORD, is_staff=True)


def sign_in(door: str, username: str, password: str, address: str = ADDRESS, **headers):
    path, _ = DOORS[door]
    return Client().post(path, {"username": username, "password": password}, REMOTE_ADDR=address, **headers)


def signed_in(response, door: str) -> bool:
    return response.status_code == 302 and response["Location"] == DOORS[door][1]


def token(username: str, password: str, address: str = ADDRESS):
    body = {"username": username, "password": password}
    return APIClient().post("/api/v1/auth/token/", body, format="json", REMOTE_ADDR=address)


def fail(door: str, times: int, username: str = "li", **kwargs) -> list[int]:
    return [sign_in(door, username, "a-wrong-guess", **kwargs).status_code for _ in range(times)]


def let_the_cool_off_pass(settings) -> None:
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))


@pytest.mark.parametrize("door", DOORS)
def test_wrong_passwords_lock_the_account_until_the_cool_off_passes(door, li, settings):
    # The form again ("wrong username or password"); the failure that reaches the limit is locked.
    assert fail(door, LIMIT) == [200] * (LIMIT - 1) + [429]
    locked = sign_in(door, "li", PASSWORD)
    assert locked.status_code == 429
    assert lockout_message() in locked.content.decode()
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert "_auth_user_id" not in locked.wsgi_request.session
    let_the_cool_off_pass(settings)
    assert signed_in(sign_in(door, "li", PASSWORD), door)


@pytest.mark.parametrize("door", DOORS)
def test_the_lock_answers_the_sign_in_page_itself(door, li):
    fail(door, LIMIT)
    page = sign_in(door, "li", PASSWORD).content.decode()
    assert 'name="password"' in page
    assert ("<h1>Sign in</h1>" if door == "web" else 'id="login-form"') in page


@pytest.mark.parametrize("door", DOORS)
def test_a_locked_account_is_refused_from_every_address(door, li):
    fail(door, LIMIT, address=ADDRESS)
    assert sign_in(door, "li", PASSWORD, address=OTHER_ADDRESS).status_code == 429


@pytest.mark.parametrize("door", DOORS)
def test_an_address_guessing_many_usernames_is_locked_for_every_username(door, li):
    for n in range(LIMIT):
        fail(door, 1, username=f"someone-{n}")
    assert sign_in(door, "li", PASSWORD, address=ADDRESS).status_code == 429
    assert signed_in(sign_in(door, "li", PASSWORD, address=OTHER_ADDRESS), door)


def normalised(response) -> str:
    """The page without what differs between any two answers: the CSRF token and the echoed username."""
    page = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())
    return page.replace('value="li"', 'value="?"').replace('value="nobody"', 'value="?"')


@pytest.mark.parametrize("door", DOORS)
def test_a_locked_existing_username_is_answered_exactly_as_an_unknown_one(door, li):
    fail(door, LIMIT, username="li", address=ADDRESS)
    fail(door, LIMIT, username="nobody", address=OTHER_ADDRESS)
    existing = sign_in(door, "li", PASSWORD, address=ADDRESS)
    unknown = sign_in(door, "nobody", PASSWORD, address=OTHER_ADDRESS)
    assert existing.status_code == unknown.status_code == 429
    length = len("nobody") - len("li")  # the username the form echoes
    assert int(existing["Content-Length"]) + length == int(unknown["Content-Length"])
    assert {**existing.headers, "Content-Length": ""} == {**unknown.headers, "Content-Length": ""}
    assert normalised(existing) == normalised(unknown)


@pytest.mark.parametrize("username", ["li", "nobody"])
def test_a_locked_sign_in_hashes_no_password(username, li):
    CountingHasher.hashed = 0
    fail("web", LIMIT, username=username)
    assert CountingHasher.hashed == LIMIT  # each wrong guess was hashed, known username or not
    sign_in("web", username, PASSWORD)
    token(username, PASSWORD)
    assert CountingHasher.hashed == LIMIT


def test_a_forged_forwarded_for_does_not_dodge_the_lock(li):
    codes = [sign_in("web", f"someone-{n}", "guess", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").status_code for n in range(4)]
    assert codes == [200] * (LIMIT - 1) + [429, 429]


def test_behind_a_proxy_the_address_it_appended_is_the_client(li, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = "10.1.1.1"  # the proxy's own address reaches Django as REMOTE_ADDR for every client
    for n in range(LIMIT):
        forged = f"10.0.0.{n}, 203.0.113.9"  # the client's own text, then what the proxy appended
        fail("web", 1, username=f"someone-{n}", address=proxy, HTTP_X_FORWARDED_FOR=forged)
    assert sign_in("web", "li", PASSWORD, proxy, HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.9").status_code == 429
    assert signed_in(sign_in("web", "li", PASSWORD, proxy, HTTP_X_FORWARDED_FOR="203.0.113.10"), "web")


def test_addresses_that_are_no_ip_share_one_count_and_are_no_500(li, settings):
    # Two proxies configured where the client reached the last one directly: its own text is taken.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 2}
    codes = [
        sign_in("web", f"someone-{n}", "guess", HTTP_X_FORWARDED_FOR=f"not-an-ip-{n}, 10.1.1.1").status_code
        for n in range(LIMIT + 1)
    ]
    assert codes == [200] * (LIMIT - 1) + [429, 429]


def test_token_failures_count_toward_the_web_lock_and_a_locked_account_gets_no_token(li):
    assert [token("li", "a-wrong-guess").status_code for _ in range(LIMIT - 1)] == [400] * (LIMIT - 1)
    fail("web", 1)
    assert sign_in("web", "li", PASSWORD, address=OTHER_ADDRESS).status_code == 429
    refused = token("li", PASSWORD, address=OTHER_ADDRESS)
    assert refused.status_code == 429
    assert refused.json() == {"detail": lockout_message()}
    assert "token" not in refused.json()


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_concurrent_guesses_on_postgresql_are_each_counted_or_refused_unhashed(postgres, li):
    """Axes checks the lock before hashing and counts after it, so guesses in flight together can
    all pass the check (at most one per web thread); every one that was hashed is counted (the row
    update is atomic), none is a 500, and the account is locked afterwards."""
    CountingHasher.hashed = 0

    def guess(n: int) -> int:
        try:
            return sign_in("web", "li", f"guess-{n}").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(guess, range(24)))
    assert set(codes) <= {200, 429}
    counted = AccessAttempt.objects.filter(username="li").aggregate(n=Sum("failures_since_start"))["n"]
    assert counted == CountingHasher.hashed >= LIMIT
    FIGURES["sign-in limits, 24 concurrent guesses (8 threads)"].update(hashed=counted, refused=24 - counted)
    assert sign_in("web", "li", PASSWORD).status_code == 429


def test_a_locked_account_is_unlocked_by_axes_reset_username(li):
    fail("web", LIMIT, address=ADDRESS)
    call_command("axes_reset_username", "li", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert signed_in(sign_in("web", "li", PASSWORD, address=OTHER_ADDRESS), "web")


SIGN_UP = {"role": "buyer", "email": "a@example.com", "password": "a-long-pass-phrase"}


def sign_up_body(n: int) -> dict:
    return {**SIGN_UP, "username": f"user{n}", "organisation": f"Org number {n}"}


def test_web_sign_ups_share_the_api_registrations_rate(db, monkeypatch):
    rates = {**SimpleRateThrottle.THROTTLE_RATES, "signup": "2/hour"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    assert Client().post("/signup/", sign_up_body(1), REMOTE_ADDR=ADDRESS).status_code == 302
    api = APIClient().post("/api/v1/auth/register/", sign_up_body(2), format="json", REMOTE_ADDR=ADDRESS)
    assert api.status_code == 201
    refused = Client().post("/signup/", sign_up_body(3), REMOTE_ADDR=ADDRESS)
    assert refused.status_code == 429
    assert "Too many sign-ups from this address" in refused.content.decode()
    assert 0 < int(refused["Retry-After"]) <= 3600
    api = APIClient().post("/api/v1/auth/register/", sign_up_body(4), format="json", REMOTE_ADDR=ADDRESS)
    assert api.status_code == 429
    assert Client().post("/signup/", sign_up_body(5), REMOTE_ADDR=OTHER_ADDRESS).status_code == 302
    assert set(get_user_model().objects.values_list("username", flat=True)) == {"user1", "user2", "user5"}
