"""Services check domain rules first (errors naming the field) and write nothing on failure."""

from datetime import timedelta
from decimal import Decimal

import pytest

from marketplace import services
from marketplace.errors import CapacityGone, InvalidInput, InvalidTransition, NotAllowed, NotFound
from marketplace.models import BuyerRequest, Listing, Match, Membership
from tests.services_helpers import reserve


def test_register_creates_user_and_organisation(db):
    user = services.account_register(
        username="ops", password="a-long-pass-phrase", email="ops@example.com", role="provider", organisation="Gobi DC"
    )
    assert user.membership.organisation.kind == "provider"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"password": "123"}, "password"),
        ({"role": "admin"}, "role"),
        ({"organisation": "Huangpu Chat AI"}, "organisation"),
    ],
)
def test_register_refuses_bad_input_naming_the_field(buyer, changes, field):
    fields = {
        "username": "ops",
        "password": "a-long-pass-phrase",
        "email": "o@example.com",
        "role": "provider",
        "organisation": "Gobi DC",
    }
    with pytest.raises(InvalidInput) as error:
        services.account_register(**{**fields, **changes})
    assert error.value.field == field
    assert not Membership.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"gpu_count": 12}, "gpu_count"),
        ({"gpus_per_node": 3}, "gpus_per_node"),
        ({"price_per_gpu_hour": Decimal("0")}, "price_per_gpu_hour"),
    ],
)
def test_listing_create_names_the_bad_field(make_listing, overrides, field):
    with pytest.raises(InvalidInput) as error:
        make_listing(**overrides)
    assert error.value.field == field
    assert not Listing.objects.exists()


def test_listing_window_must_be_ordered(make_listing, now):
    with pytest.raises(InvalidInput) as error:
        make_listing(available_from=now, available_until=now - timedelta(hours=1))
    assert error.value.field == "available_until"


def test_buyers_cannot_list_capacity(make_listing, buyer):
    with pytest.raises(NotAllowed):
        make_listing(provider=buyer)


def test_listing_cannot_shrink_below_allocated(make_listing, make_request, provider, now):
    listing = make_listing(gpu_count=16)
    reserve(listing, make_request(gpus_per_replica=8, replicas=1), now, nodes=(1,))
    with pytest.raises(CapacityGone) as error:
        services.listing_update(listing_id=listing.pk, provider=provider, changes={"gpu_count": 8})
    assert error.value.field == "gpu_count"
    services.listing_update(listing_id=listing.pk, provider=provider, changes={"gpu_count": 24})
    listing.refresh_from_db()
    assert (listing.gpu_count, listing.allocated_gpus) == (24, 8)


def test_listing_update_refuses_unknown_fields_and_other_providers(make_listing, other_provider, provider):
    listing = make_listing()
    with pytest.raises(InvalidInput) as error:
        services.listing_update(listing_id=listing.pk, provider=provider, changes={"allocated_gpus": 0})
    assert error.value.field == "allocated_gpus"
    with pytest.raises(NotFound):
        services.listing_update(listing_id=listing.pk, provider=other_provider, changes={"gpu_count": 8})


def test_withdrawing_twice_is_refused(make_listing, provider):
    listing = make_listing()
    services.listing_withdraw(listing_id=listing.pk, provider=provider)
    with pytest.raises(InvalidTransition):
        services.listing_withdraw(listing_id=listing.pk, provider=provider)


def test_request_defaults_to_standard_and_derives_class_from_max_rtt(make_request):
    assert make_request(latency_class=None).latency_class == "standard"
    explicit = make_request(latency_class=None, max_rtt_ms=Decimal("25"))
    assert (explicit.latency_class, explicit.rtt_bound_ms) == ("interactive", Decimal("25"))
    assert make_request(latency_class="batch").rtt_bound_ms is None


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"max_rtt_ms": Decimal("20")}, "max_rtt_ms"),
        ({"gpus_per_replica": 3}, "gpus_per_replica"),
        ({"replicas": 0}, "replicas"),
        ({"replicas": 4096, "gpus_per_replica": 8}, "replicas"),
        ({"duration_hours": 0}, "duration_hours"),
        ({"max_price_per_gpu_hour": Decimal("-1")}, "max_price_per_gpu_hour"),
        ({"latency_class": "warp"}, "latency_class"),
    ],
)
def test_request_submit_names_the_bad_field(make_request, overrides, field):
    with pytest.raises(InvalidInput) as error:
        make_request(**overrides)
    assert error.value.field == field
    assert not BuyerRequest.objects.exists()


def test_request_must_start_in_the_future(make_request, now):
    with pytest.raises(InvalidInput) as error:
        make_request(start_by=now - timedelta(minutes=1))
    assert error.value.field == "start_by"


def test_cancelling_a_request_frees_its_reserved_gpus(make_listing, make_request, buyer, now):
    listing = make_listing()
    request = make_request(gpus_per_replica=4, replicas=2)
    reserve(listing, request, now, nodes=(0, 1))
    listing.refresh_from_db()
    assert listing.allocated_gpus == 8
    services.request_cancel(request_id=request.pk, buyer=buyer)
    listing.refresh_from_db()
    assert listing.allocated_gpus == 0
    assert set(Match.objects.values_list("status", flat=True)) == {"cancelled"}
    with pytest.raises(InvalidTransition):
        services.request_cancel(request_id=request.pk, buyer=buyer)


def test_plan_apply_skips_assignments_whose_node_is_full(make_listing, make_request, now):
    listing = make_listing(gpu_count=8)
    first, second = make_request(gpus_per_replica=8, replicas=1), make_request(gpus_per_replica=8, replicas=1)
    assert reserve(listing, first, now).served_replicas == 1
    result = reserve(listing, second, now)
    assert result.served_replicas == 0
    assert len(result.stale) == 1
    listing.refresh_from_db()
    second.refresh_from_db()
    assert (listing.allocated_gpus, second.status) == (8, "open")


def test_plan_apply_updates_request_progress(make_listing, make_request, now):
    request = make_request(gpus_per_replica=2, replicas=3)
    reserve(make_listing(), request, now, nodes=(0, 0))
    request.refresh_from_db()
    assert (request.matched_replicas, request.status) == (2, "partially_matched")
