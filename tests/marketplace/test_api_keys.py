"""API keys, scopes, organisation roles, spend caps and credential revocation."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.urls import URLPattern
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from marketplace import services
from marketplace.api.permissions import KeyScopes
from marketplace.api.urls import urlpatterns as api_routes
from marketplace.errors import InvalidInput, SpendCapExceeded
from marketplace.models import ApiKey, BuyerRequest, GpuModel, Membership, Organisation, Region, Settlement
from marketplace.money import worst_case_charge
from marketplace.selectors.engine import engine_problem
from marketplace.services.spend import month_committed, spend_month_of
from tests.conftest import member
from tests.services_helpers import race, request_terms, reserve

API = "/api/v1"
#: request_terms(): 1 GPU × 24 h at up to 9.00 CNY, one line: 216.00 + half a fen, rounded up.
ONE_REQUEST = Decimal("216.01")


def key_client(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


def create_key(client, **body) -> dict:
    response = client.post(f"{API}/api-keys/", {"name": "ci", "scopes": ["read", "trade"], **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


# --- keys ---------------------------------------------------------------------------------------


def test_an_owner_creates_a_key_whose_secret_is_shown_once_and_stored_hashed(clients):
    created = create_key(clients["buyer"], name="deploy bot", scopes=["trade", "read"])
    secret = created["secret"]
    assert secret.startswith(f"gmk_{created['prefix']}_")
    assert created["scopes"] == ["read", "trade"]
    key = ApiKey.objects.get(pk=created["id"])
    assert key.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    stored = " ".join(str(value) for value in ApiKey.objects.filter(pk=key.pk).values().first().values())
    assert secret not in stored
    listed = clients["buyer"].get(f"{API}/api-keys/").json()
    assert listed["count"] == 1
    assert "secret" not in listed["results"][0]
    assert secret not in clients["buyer"].get(f"{API}/api-keys/{key.pk}/").content.decode()


def test_a_key_authenticates_as_its_creator_and_records_its_last_use(clients):
    created = create_key(clients["buyer"])
    response = key_client(created["secret"]).get(f"{API}/requests/")
    assert response.status_code == 200
    assert ApiKey.objects.get(pk=created["id"]).last_used_at is not None


def test_a_read_key_cannot_create_and_is_told_the_missing_scope(clients):
    reader = key_client(create_key(clients["buyer"], scopes=["read"])["secret"])
    assert reader.get(f"{API}/requests/").status_code == 200
    before = BuyerRequest.objects.count()
    response = reader.post(f"{API}/requests/", request_terms(), format="json")
    assert response.status_code == 403
    assert '"trade"' in response.json()["detail"]
    assert BuyerRequest.objects.count() == before
    assert reader.post(f"{API}/api-keys/", {"name": "x", "scopes": ["admin"]}, format="json").status_code == 403


def test_a_trade_key_without_admin_cannot_see_or_make_keys_or_members(clients):
    trader = key_client(create_key(clients["buyer"], scopes=["read", "trade"])["secret"])
    assert trader.post(f"{API}/requests/", request_terms(), format="json").status_code == 201
    for path in ("api-keys/", "members/"):
        response = trader.get(f"{API}/{path}")
        assert response.status_code == 403
        assert '"admin"' in response.json()["detail"]
    assert trader.patch(f"{API}/organisation/", {"monthly_spend_cap": "1"}, format="json").status_code == 403
    assert trader.get(f"{API}/organisation/").status_code == 200


def test_a_revoked_key_is_refused_at_once(clients):
    created = create_key(clients["buyer"])
    client = key_client(created["secret"])
    assert client.get(f"{API}/requests/").status_code == 200
    revoked = clients["buyer"].delete(f"{API}/api-keys/{created['id']}/")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    response = client.get(f"{API}/requests/")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_an_expired_key_is_refused(clients):
    created = create_key(clients["buyer"], expires_at=(timezone.now() + timedelta(hours=1)).isoformat())
    client = key_client(created["secret"])
    assert client.get(f"{API}/requests/").status_code == 200
    ApiKey.objects.filter(pk=created["id"]).update(
        created_at=timezone.now() - timedelta(days=2), expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = client.get(f"{API}/requests/")
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": []}, "scopes"),
        ({"scopes": ["everything"]}, "scopes"),
        ({"name": ""}, "name"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"monthly_spend_cap": "0"}, "monthly_spend_cap"),
    ],
)
def test_a_bad_key_is_a_400_naming_the_field_and_writes_nothing(clients, body, field):
    response = clients["buyer"].post(f"{API}/api-keys/", {"name": "k", "scopes": ["read"], **body}, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not ApiKey.objects.exists()


def test_a_guessed_or_malformed_key_is_a_401(clients):
    created = create_key(clients["buyer"])
    forged = created["secret"][:-4] + "AAAA"
    for secret in (forged, "gmk_nope", "gmk_" + "0" * 12 + "_x"):
        assert key_client(secret).get(f"{API}/requests/").status_code == 401


def test_a_legacy_token_keeps_every_scope(clients, buyer):
    token = Token.objects.create(user=get_user_model().objects.get(username="buy"))
    client = key_client(token.key)
    assert client.post(f"{API}/requests/", request_terms(), format="json").status_code == 201
    assert client.get(f"{API}/api-keys/").status_code == 200


def test_a_key_stops_when_its_user_leaves_the_organisation(clients, buyer):
    colleague = member("colleague", buyer)  # an owner, by the default role
    client = client_of(colleague)
    secret = create_key(client)["secret"]
    membership = Membership.objects.get(user=colleague)
    assert clients["buyer"].delete(f"{API}/members/{membership.pk}/").status_code == 204
    assert key_client(secret).get(f"{API}/requests/").status_code == 401


def client_of(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_every_api_view_holds_keys_to_their_scopes():
    """KeyScopes is in the default permissions; views naming their own must keep it (``scoped``)."""
    for route in api_routes:
        assert isinstance(route, URLPattern)
        view = route.callback.view_class()
        for method in ("GET", "POST", "PATCH", "DELETE"):
            view.request = type("Request", (), {"method": method})()
            assert any(isinstance(permission, KeyScopes) for permission in view.get_permissions()), route


# --- members and roles --------------------------------------------------------------------------


def test_an_owner_adds_a_member_who_acts_for_the_organisation_but_cannot_manage_it(clients, buyer):
    body = {"username": "analyst", "email": "a@example.com", "password": "a-long-pass-phrase", "role": "member"}
    response = clients["buyer"].post(f"{API}/members/", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["role"] == "member"
    analyst = client_of(get_user_model().objects.get(username="analyst"))
    assert analyst.post(f"{API}/requests/", request_terms(), format="json").status_code == 201
    assert analyst.get(f"{API}/members/").status_code == 403
    assert analyst.post(f"{API}/api-keys/", {"name": "k", "scopes": ["read"]}, format="json").status_code == 403
    assert analyst.get(f"{API}/organisation/").json()["role"] == "member"


def test_the_last_owner_can_be_neither_demoted_nor_removed(clients, buyer):
    owner = Membership.objects.get(user__username="buy")
    demoted = clients["buyer"].patch(f"{API}/members/{owner.pk}/", {"role": "member"}, format="json")
    assert demoted.status_code == 400
    assert "last owner" in demoted.json()["role"][0]
    removed = clients["buyer"].delete(f"{API}/members/{owner.pk}/")
    assert removed.status_code == 400
    assert "id" in removed.json()
    member("second", buyer)
    assert clients["buyer"].patch(f"{API}/members/{owner.pk}/", {"role": "member"}, format="json").status_code == 200


def test_another_organisations_member_does_not_exist_for_an_owner(clients, other_buyer):
    stranger = Membership.objects.get(user__username="buy2")
    assert clients["buyer"].patch(f"{API}/members/{stranger.pk}/", {"role": "member"}, format="json").status_code == 404
    assert clients["buyer"].delete(f"{API}/members/{stranger.pk}/").status_code == 404


# --- spend caps ---------------------------------------------------------------------------------


def test_the_worst_case_counts_each_lines_rounding():
    assert worst_case_charge(price_per_gpu_hour=Decimal("9.00"), gpu_hours=Decimal(24), lines=1) == ONE_REQUEST
    assert worst_case_charge(price_per_gpu_hour=Decimal("0.0001"), gpu_hours=Decimal(1), lines=3) == Decimal("0.02")


def test_a_key_past_its_spend_cap_is_refused_with_402_naming_the_cap(clients, buyer):
    created = create_key(clients["buyer"], monthly_spend_cap=str(ONE_REQUEST * 2))
    client = key_client(created["secret"])
    assert [client.post(f"{API}/requests/", request_terms(), format="json").status_code for _ in range(2)] == [201] * 2
    count = BuyerRequest.objects.count()
    refused = client.post(f"{API}/requests/", request_terms(), format="json")
    assert refused.status_code == 402
    assert refused.json()["monthly_spend_cap"] == [
        "This request may cost up to 216.01 CNY; the API key's monthly spend cap is 432.02 CNY and 432.02 CNY "
        f"of it is committed for {spend_month_of(timezone.now()):%Y-%m}."
    ]
    assert BuyerRequest.objects.count() == count
    assert clients["buyer"].post(f"{API}/requests/", request_terms(), format="json").status_code == 201
    listed = clients["buyer"].get(f"{API}/api-keys/{created['id']}/").json()
    assert Decimal(listed["spent_this_month"]) == ONE_REQUEST * 2


def test_an_organisation_past_its_cap_is_refused_until_a_cancel_releases_the_reservation(clients, buyer):
    patched = clients["buyer"].patch(f"{API}/organisation/", {"monthly_spend_cap": str(ONE_REQUEST)}, format="json")
    assert patched.status_code == 200
    assert Decimal(patched.json()["monthly_spend_cap"]) == ONE_REQUEST
    first = clients["buyer"].post(f"{API}/requests/", request_terms(), format="json")
    assert first.status_code == 201
    refused = clients["buyer"].post(f"{API}/requests/", request_terms(), format="json")
    assert refused.status_code == 402
    assert "organisation's monthly spend cap" in refused.json()["monthly_spend_cap"][0]
    assert clients["buyer"].post(f"{API}/requests/{first.json()['id']}/cancel/").status_code == 200
    assert Decimal(clients["buyer"].get(f"{API}/organisation/").json()["spent_this_month"]) == 0
    assert clients["buyer"].post(f"{API}/requests/", request_terms(), format="json").status_code == 201


def test_an_expired_request_releases_its_reservation(make_request, buyer, now):
    request = make_request(start_by=now + timedelta(minutes=5))
    month = spend_month_of(now)
    assert month_committed(organisation_id=buyer.pk, month=month) == request.spend_committed > 0
    services.lifecycle_tick(now=now + timedelta(minutes=10))
    request.refresh_from_db()
    assert request.status == "expired"
    assert month_committed(organisation_id=buyer.pk, month=month) == 0


def test_a_partly_served_request_past_start_by_keeps_only_its_matches_worst_case(make_listing, make_request, now):
    listing = make_listing()
    request = make_request(replicas=2, start_by=now + timedelta(minutes=5))
    reserve(listing, request, now)  # one of two replicas, at the listing's 6.00
    services.lifecycle_tick(now=now + timedelta(minutes=10))
    request.refresh_from_db()
    assert request.status == "partially_matched"
    assert request.spend_committed == worst_case_charge(
        price_per_gpu_hour=Decimal("6.00"), gpu_hours=Decimal(24), lines=1
    )


def test_a_request_matched_below_its_cap_keeps_only_its_matches_worst_case_after_a_tick(
    make_listing, make_request, now
):
    """Matched at 6.00 where the cap was 10.00: the tick frees the difference for the month."""
    listing = make_listing()
    request = make_request(replicas=1)
    reserve(listing, request, now)
    request.refresh_from_db()
    assert request.status == "matched"
    assert request.spend_committed == worst_case_charge(
        price_per_gpu_hour=Decimal("10.00"), gpu_hours=Decimal(24), lines=1
    )
    services.lifecycle_tick(now=now)
    request.refresh_from_db()
    assert request.spend_committed == Decimal("144.01")


def test_only_owners_set_the_organisation_cap(clients, buyer):
    helper = member("helper", buyer)
    Membership.objects.filter(user=helper).update(role="member")
    response = client_of(helper).patch(f"{API}/organisation/", {"monthly_spend_cap": "5"}, format="json")
    assert response.status_code == 403
    assert Organisation.objects.get(pk=buyer.pk).monthly_spend_cap is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_fifty_concurrent_submissions_never_pass_the_cap(postgres, reference, buyer):
    """50 threads, each its own PostgreSQL connection, submit at once against caps that fit 7
    requests (organisation) and 5 (the key): the key's 5 go through, the rest are 402s."""
    owner = member("owner", buyer)
    Organisation.objects.filter(pk=buyer.pk).update(monthly_spend_cap=ONE_REQUEST * 7 + Decimal("0.5"))
    key = services.api_key_create(
        organisation=buyer, user=owner, name="burst", scopes=["trade"], monthly_spend_cap=ONE_REQUEST * 5
    ).key
    terms = {
        "gpu_model": "h20", "gpus_per_replica": 1, "replicas": 1, "origin": "shanghai", "latency_class": "batch",
        "max_price_per_gpu_hour": Decimal("9.00"), "duration_hours": 24,
        "start_by": timezone.now() + timedelta(hours=6),
    }  # fmt: skip
    terms |= {"gpu_model": GpuModel.objects.get(code="h20"), "origin": Region.objects.get(code="shanghai")}
    via_key = [lambda: services.request_submit(buyer=buyer, api_key=key, **terms) for _ in range(25)]
    direct = [lambda: services.request_submit(buyer=buyer, **terms) for _ in range(25)]
    outcomes = race(*via_key, *direct)
    accepted = [outcome for outcome in outcomes if isinstance(outcome, BuyerRequest)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, SpendCapExceeded)]
    assert len(accepted) + len(refused) == 50, [
        o for o in outcomes if not isinstance(o, BuyerRequest | SpendCapExceeded)
    ]
    month = spend_month_of(timezone.now())
    assert month_committed(organisation_id=buyer.pk, month=month) <= ONE_REQUEST * 7 + Decimal("0.5")
    assert month_committed(organisation_id=buyer.pk, month=month, api_key_id=key.pk) <= ONE_REQUEST * 5
    assert len(accepted) == 7
    assert BuyerRequest.objects.filter(buyer=buyer).count() == 7


# --- revocation ---------------------------------------------------------------------------------


@pytest.fixture
def signed_in(client, clients):
    """The buyer's owner signed in to the web, with a legacy token and an API key."""
    user = get_user_model().objects.get(username="buy")
    client.force_login(user)
    token = Token.objects.create(user=user)
    created = services.api_key_create(organisation=user.membership.organisation, user=user, name="k", scopes=["read"])
    return client, user, token, created


def test_signing_out_revokes_the_users_tokens_and_keys(signed_in):
    client, user, token, created = signed_in
    assert key_client(created.secret).get(f"{API}/requests/").status_code == 200
    assert client.post("/signout/").status_code in (200, 302)
    assert not Token.objects.filter(user=user).exists()
    assert key_client(token.key).get(f"{API}/requests/").status_code == 401
    assert key_client(created.secret).get(f"{API}/requests/").status_code == 401


def test_changing_the_password_revokes_the_users_tokens_and_keys(signed_in):
    client, user, _, created = signed_in
    body = {
        "old_password": "pw-for-tests-1",
        "new_password1": "a-new-long-phrase",
        "new_password2": "a-new-long-phrase",
    }
    assert client.post("/password/", body).status_code == 302
    assert not Token.objects.filter(user=user).exists()
    assert ApiKey.objects.get(pk=created.key.pk).revoked_at is not None
    assert client.get("/organisation/").status_code == 200  # the session itself stays signed in


def test_the_organisation_page_shows_a_new_secret_once_and_revokes(signed_in):
    client = signed_in[0]
    assert client.get("/organisation/").status_code == 200
    page = client.post("/organisation/keys/", {"name": "web key", "scopes": ["read", "trade"]})
    assert page.status_code == 200
    key = ApiKey.objects.get(name="web key")
    secret = page.context["new_secret"].secret
    assert secret in page.content.decode()
    assert secret not in client.get("/organisation/").content.decode()
    assert client.post(f"/organisation/keys/{key.pk}/revoke/").status_code == 302
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None


def test_the_organisation_page_is_for_owners(client, buyer, clients):
    helper = member("helper", buyer)
    Membership.objects.filter(user=helper).update(role="member")
    client.force_login(helper)
    assert client.get("/organisation/").status_code == 403


def test_removing_a_member_revokes_its_keys_and_the_service_names_the_last_owner(buyer, clients):
    owner = get_user_model().objects.get(username="buy")
    with pytest.raises(InvalidInput, match="last owner"):
        services.member_remove(organisation=buyer, by=owner, membership_id=owner.membership.pk)


# --- the database's own guards ------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [{"scopes": "write"}, {"scopes": "trade read"}, {"scopes": ""}, {"monthly_spend_cap": Decimal(0)}, {"name": ""}],
)
def test_the_database_refuses_a_key_outside_its_domain(clients, changes):
    """Scopes are a known subset in the one stored order; a cap is above 0; a name is not blank."""
    key = services.api_key_create(
        organisation=Organisation.objects.get(name="Huangpu Chat AI"),
        user=get_user_model().objects.get(username="buy"),
        name="k",
        scopes=["read"],
    ).key
    with pytest.raises(IntegrityError), transaction.atomic():
        ApiKey.objects.filter(pk=key.pk).update(**changes)


def test_the_database_refuses_a_zero_organisation_cap_and_an_unknown_role(buyer, clients):
    with pytest.raises(IntegrityError), transaction.atomic():
        Organisation.objects.filter(pk=buyer.pk).update(monthly_spend_cap=Decimal(0))
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.filter(organisation=buyer).update(role="admin")


def fail_both_replicas_after_12_hours(make_listing, make_request, provider, now):
    """Two replicas at the 10.00 cap (reserving 480.01) on a 10.00 listing; node 0 fails 12 h in,
    240.00 is charged, and both replicas are open again for 24 h. Returns the request and then."""
    listing = make_listing(price_per_gpu_hour=Decimal("10.00"))
    request = make_request(replicas=2, start_by=now + timedelta(hours=20))
    assert request.spend_committed == Decimal("480.01")
    reserve(listing, request, now, nodes=(0, 0))
    services.lifecycle_tick(now=now)  # fully matched: the reservation shrinks to the matches' worst case
    later = now + timedelta(hours=12)
    services.listing_nodes_fail(listing_id=listing.pk, provider=provider, nodes=[0], now=later)
    request.refresh_from_db()
    assert request.matched_replicas == 0
    charged = Settlement.objects.filter(match__request=request).aggregate(total=Sum("buyer_pays"))["total"]
    assert charged == Decimal("240.00")
    return request, later


def offered_replicas(request, now) -> int | None:
    specs = engine_problem(gpu_model_code="h20", now=now).problem.requests
    return next((spec.replicas for spec in specs if spec.id == request.pk), None)


def test_a_fail_over_grows_the_reservation_back_so_both_replicas_are_placed_again(
    make_listing, make_request, provider, now
):
    request, later = fail_both_replicas_after_12_hours(make_listing, make_request, provider, now)
    assert request.spend_committed == Decimal("240.00") + Decimal("480.01")
    assert offered_replicas(request, later) == 2


def test_after_a_fail_over_a_round_offers_only_the_replicas_the_cap_still_covers(
    make_listing, make_request, provider, buyer, now
):
    """With a 600.00 cap, the reservation grows from 480.01 only to the cap: 240.00 charged leaves
    360.00, which covers one replica at the cap (240.01), not two — so the round is offered one,
    and charges can never pass the cap."""
    buyer.monthly_spend_cap = Decimal("600.00")
    buyer.save(update_fields=["monthly_spend_cap"])
    request, later = fail_both_replicas_after_12_hours(make_listing, make_request, provider, now)
    assert request.spend_committed == Decimal("600.00")
    assert month_committed(organisation_id=buyer.pk, month=spend_month_of(now)) == Decimal("600.00")
    assert offered_replicas(request, later) == 1


def test_a_request_that_never_failed_over_is_offered_all_its_open_replicas(make_listing, make_request, now):
    """The reservation's rounding margin is per request, not per replica: without a fail-over, no
    replica is held back by it."""
    request = make_request(replicas=3, max_price_per_gpu_hour=Decimal("6.00"))
    assert offered_replicas(request, now) == 3


def test_two_requests_failing_over_at_once_share_the_room_the_cap_leaves(
    make_listing, make_request, provider, buyer, now
):
    """Two requests of one organisation fail over together: each growth counts against the next,
    so together they never take the month past the cap."""
    buyer.monthly_spend_cap = Decimal("1200.00")
    buyer.save(update_fields=["monthly_spend_cap"])
    listing = make_listing(price_per_gpu_hour=Decimal("10.00"))
    requests = [make_request(replicas=2, start_by=now + timedelta(hours=20)) for _ in range(2)]
    for request in requests:
        reserve(listing, request, now, nodes=(0, 0))
    services.lifecycle_tick(now=now)
    services.listing_nodes_fail(listing_id=listing.pk, provider=provider, nodes=[0], now=now + timedelta(hours=12))
    assert month_committed(organisation_id=buyer.pk, month=spend_month_of(now)) == Decimal("1200.00")
