"""Limits on signing in and signing up: the sign-in page, the admin's login and the API alike.

Sign-in: django-axes counts failed sign-ins (``config/settings/base.py``, "Sign-in limits") per
account and per client address, whichever door they came through (the page, the admin, the token
endpoint: each calls ``authenticate()`` with the request). At the limit, its backend refuses the
account and the address before any password is hashed, until the cool-off has passed since the last
counted failure. The refusal is the sign-in page with ``lockout_message()`` and status 429, the same
for a username that exists and one that does not (axes counts both alike).

Sign-up: ``SignUpRateThrottle`` counts sign-ups per client address in the shared cache, for the API's
registration and the sign-up page together, so neither door lets more accounts through than the rate.

Password reset: ``PasswordResetRateThrottle`` counts the reset e-mails asked for per client address,
so the page that sends e-mail cannot be used to flood someone's inbox.

All take the client's address by one rule, the API throttles' (``client_address``).
"""

from __future__ import annotations

import ipaddress
import math

from axes.helpers import get_cool_off
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import ngettext
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

#: The page a lock-out answers when the refused view rendered none of its own (the web sign-in's).
SIGNIN_TEMPLATE = "web/signin.html"


def client_address(request) -> str | None:
    """The client's IP address as the API's throttles identify it (``AXES_CLIENT_IP_CALLABLE``).

    ``REMOTE_ADDR``, or, with ``NUM_PROXIES`` set, the entry that many hops from the end of
    ``X-Forwarded-For`` (the one our own proxy appended), so a forged header never names a new
    client. Something that is no IP address (a proxy count larger than the real one lets a client's
    own text through) is ``None``: such clients share one count rather than each getting a fresh one.
    """
    address = BaseThrottle().get_ident(request)
    try:
        return str(ipaddress.ip_address((address or "").strip()))
    except ValueError:
        return None


def cool_off_seconds() -> int:
    """How long an account or address stays refused after its last counted failure."""
    cool_off = get_cool_off()
    return int(cool_off.total_seconds()) if cool_off else 0


def lockout_message() -> str:
    """What a refused sign-in is told: no word on whether the account exists."""
    minutes = math.ceil(cool_off_seconds() / 60)
    return ngettext(
        "Too many failed sign-ins from this address or for this username. "
        "Signing in is paused for up to %(minutes)d minute; try again later.",
        "Too many failed sign-ins from this address or for this username. "
        "Signing in is paused for up to %(minutes)d minutes; try again later.",
        minutes,
    ) % {"minutes": minutes}


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    """``AXES_LOCKOUT_CALLABLE``: the page the refused sign-in came from, again, with the lock-out
    message in place of "wrong username or password", status 429 and ``Retry-After``.

    The web sign-in and the admin login are Django ``LoginView``s: their response keeps its template
    and context (``form``), so each answers its own page, and an existing username is answered
    exactly as an unknown one. ``credentials`` is unused: the answer must not depend on them.
    """
    context = dict(getattr(original_response, "context_data", None) or {})
    template = getattr(original_response, "template_name", None) or SIGNIN_TEMPLATE
    form = context.get("form") or AuthenticationForm(request)
    form.errors[NON_FIELD_ERRORS] = form.error_class([lockout_message()], error_class="nonfield")
    context["form"] = form
    response = TemplateResponse(request, template, context, status=429)
    response["Retry-After"] = str(cool_off_seconds())
    return response.render()


class SignUpRateThrottle(SimpleRateThrottle):
    """Sign-ups per client address (``THROTTLE_SIGNUP``), counted in the shared cache: the API's
    ``POST /api/v1/auth/register/`` and the sign-up page share one count."""

    scope = "signup"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class PasswordResetRateThrottle(SignUpRateThrottle):
    """Password reset e-mails asked for per client address (``THROTTLE_PASSWORD_RESET``), counted
    whether or not an account has the address given, so the count tells nothing either."""

    scope = "password_reset"


def sign_up_wait(request: HttpRequest) -> int | None:
    """Counts a sign-up attempt from the page: ``None`` when it fits the rate, else the seconds until
    one would (the answer's ``Retry-After``)."""
    return _wait(SignUpRateThrottle(), request)


def password_reset_wait(request: HttpRequest) -> int | None:
    """Counts a password reset asked for: ``None`` when it fits the rate, else the seconds to wait."""
    return _wait(PasswordResetRateThrottle(), request)


def _wait(throttle: SimpleRateThrottle, request: HttpRequest) -> int | None:
    if throttle.allow_request(request, None):
        return None
    return math.ceil(throttle.wait() or 0)
