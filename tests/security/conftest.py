"""Security suite fixtures (real tokens per role, a private throttle cache) and its figures.

The figures (schemathesis cases per role, matrix rows) are printed at the end of a run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.cache.backends.locmem import LocMemCache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from marketplace import services
from marketplace.models import (
    ApiKey,
    BuyerRequest,
    Listing,
    Match,
    Membership,
    Organisation,
    Voucher,
    VoucherProgram,
    WebhookDelivery,
    WebhookEndpoint,
)
from marketplace.services.events import event_publish
from marketplace.services.webhooks import webhook_endpoint_create
from tests.conftest import member
from tests.security.figures import FIGURES
from tests.services_helpers import reserve

#: The callers of the matrix: each party, a stranger and an administrator. ``provider`` owns the
#: listings and promotions, ``buyer`` the requests, matches and vouchers.
ROLES = ("provider", "other_provider", "buyer", "other_buyer", "anonymous", "staff")
#: The users ``tests.conftest.clients`` creates for each role.
USERNAMES = {"provider": "prov", "other_provider": "prov2", "buyer": "buy", "other_buyer": "buy2", "staff": "staff"}
PASSWORD = "pw-for-tests-1"


@pytest.fixture(autouse=True)
def private_throttle_cache(monkeypatch):
    """Throttles stay on, with rates these tests never reach, counted in a cache of their own: the
    thousands of calls here neither get a 429 nor leave counts in a shared Redis for other tests
    (throttle keys are user ids, which every test database reuses)."""
    monkeypatch.setattr(SimpleRateThrottle, "cache", LocMemCache("security-throttle", {}))
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", dict.fromkeys(("anon", "user", "login", "signup"), "1000000/min")
    )


@pytest.fixture
def tokens(clients) -> dict[str, dict[str, str]]:
    """The ``Authorization`` header of each role, from a real token of its user (none: anonymous)."""
    users = get_user_model().objects.filter(username__in=USERNAMES.values())
    keys = {user.username: Token.objects.create(user=user).key for user in users}
    return {role: {"Authorization": f"Token {keys[name]}"} for role, name in USERNAMES.items()} | {"anonymous": {}}


@pytest.fixture
def callers(tokens) -> dict[str, APIClient]:
    """An API client per role that authenticates the way real clients do: with its token."""
    result = {}
    for role, headers in tokens.items():
        client = APIClient()
        if headers:
            client.credentials(HTTP_AUTHORIZATION=headers["Authorization"])
        result[role] = client
    return result


@dataclass(frozen=True)
class Market:
    """One object of each kind for each party, so that every caller meets own and foreign ones."""

    provider: Organisation
    other_provider: Organisation
    buyer: Organisation
    other_buyer: Organisation
    listing: Listing  # the provider's, active, with the match on node 0 of its two nodes
    withdrawn: Listing  # the provider's, withdrawn: visible to the provider only
    foreign_listing: Listing  # the other provider's, active
    request: BuyerRequest  # the buyer's, matched
    foreign_request: BuyerRequest  # the other buyer's, open
    match: Match  # the buyer's request on the provider's listing
    city_program: VoucherProgram  # staff's (a city's subsidy)
    promotion: VoucherProgram  # the provider's
    foreign_promotion: VoucherProgram  # the other provider's
    voucher: Voucher  # the buyer's, in the city programme
    foreign_voucher: Voucher  # the other buyer's
    free_code: str  # an unclaimed code of the city programme
    api_key: ApiKey  # the buyer's, created by its owner
    foreign_api_key: ApiKey  # the other buyer's
    member: Membership  # a second user of the buyer's, in the member role
    webhook: WebhookEndpoint  # the buyer's
    provider_webhook: WebhookEndpoint  # the provider's
    webhook_delivery: WebhookDelivery  # an event to the buyer's endpoint


@pytest.fixture
def market(clients, make_listing, make_request, provider, other_provider, buyer, other_buyer, now) -> Market:
    listing = make_listing()
    withdrawn = make_listing()
    services.listing_withdraw(listing_id=withdrawn.pk, provider=provider)
    foreign_listing = make_listing(provider=other_provider, region="guizhou-guian")
    request = make_request(gpus_per_replica=8, replicas=1)
    foreign_request = make_request(buyer=other_buyer)
    match = reserve(listing, request, now).matches[0]
    window = {"valid_from": now - timedelta(days=1), "valid_until": now + timedelta(days=30)}
    city_program = services.voucher_program_create(
        name="Shanghai compute voucher", sponsor="Shanghai", percent=Decimal(30), budget=Decimal(1000), **window
    )
    promotion, foreign_promotion = (
        services.voucher_program_create(
            name=f"{sponsor.name} promotion",
            sponsor=sponsor.name,
            sponsor_provider=sponsor,
            percent=Decimal(10),
            budget=Decimal(500),
            **window,
        )
        for sponsor in (provider, other_provider)
    )
    vouchers = services.vouchers_issue(program_id=city_program.pk, sponsor_provider=None, count=3)
    owners = {user.username: user for user in get_user_model().objects.filter(username__in=["buy", "buy2"])}
    api_key, foreign_api_key = (
        services.api_key_create(organisation=org, user=owners[name], name=f"{name}'s key", scopes=["read"]).key
        for org, name in ((buyer, "buy"), (other_buyer, "buy2"))
    )
    webhook, provider_webhook = (
        webhook_endpoint_create(organisation=org, url="https://93.184.216.34/hooks", events=["match.failed"]).endpoint
        for org in (buyer, provider)
    )
    (delivery_id,) = event_publish("match.failed", buyer.pk, {"match": match.pk})
    analyst = Membership.objects.get(user=member("buy-analyst", buyer))
    Membership.objects.filter(pk=analyst.pk).update(role=Membership.Role.MEMBER)
    return Market(
        provider=provider,
        other_provider=other_provider,
        buyer=buyer,
        other_buyer=other_buyer,
        listing=listing,
        withdrawn=withdrawn,
        foreign_listing=foreign_listing,
        request=request,
        foreign_request=foreign_request,
        match=match,
        city_program=city_program,
        promotion=promotion,
        foreign_promotion=foreign_promotion,
        voucher=services.voucher_claim(code=vouchers[0].code, buyer=buyer),
        foreign_voucher=services.voucher_claim(code=vouchers[1].code, buyer=other_buyer),
        free_code=vouchers[2].code,
        api_key=api_key,
        foreign_api_key=foreign_api_key,
        member=analyst,
        webhook=webhook,
        provider_webhook=provider_webhook,
        webhook_delivery=WebhookDelivery.objects.get(pk=delivery_id),
    )


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    write = terminalreporter.write_line
    terminalreporter.section("security figures")
    cases = FIGURES.get("schemathesis", Counter())
    for role in sorted({role for role, _, _ in cases}):
        by_phase, by_status = Counter(), Counter()
        for (who, phase, status), n in cases.items():
            if who == role:
                by_phase[phase] += n
                by_status[status] += n
        reached = {label for (who, label) in FIGURES["schemathesis_2xx_operations"] if who == role}
        write(
            f"schemathesis {role}: {sum(by_phase.values())} cases "
            f"({', '.join(f'{phase} {n}' for phase, n in sorted(by_phase.items()))}); "
            f"{', '.join(f'{status} {n}' for status, n in sorted(by_status.items()))}; "
            f"{len(reached)} operations answered 2xx"
        )
    if cases:
        answered = {label for (_, label) in FIGURES["schemathesis_2xx_operations"]}
        operations = {label for (_, label) in FIGURES["schemathesis_operations"]}
        write(f"schemathesis: {len(answered)} of {len(operations)} operations answered 2xx to some role")
        if operations - answered:
            write(f"  never 2xx: {', '.join(sorted(operations - answered))}")
    for name in sorted(set(FIGURES) - {"schemathesis", "schemathesis_2xx_operations", "schemathesis_operations"}):
        write(f"{name}: {', '.join(f'{key} {n}' for key, n in sorted(FIGURES[name].items()))}")
