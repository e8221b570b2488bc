"""The database itself refuses inconsistent rows, whatever code writes them."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from marketplace.models import BuyerRequest, GpuModel, Listing, Match, Region


def listing_row(provider, now, **overrides):
    fields = {
        "provider": provider,
        "region": Region.objects.get(code="ningxia-zhongwei"),
        "gpu_model": GpuModel.objects.get(code="h20"),
        "gpu_count": 16,
        "gpus_per_node": 8,
        "price_per_gpu_hour": Decimal("6"),
        "available_from": now,
        "available_until": now + timedelta(days=1),
    }
    return Listing(**{**fields, **overrides})


@pytest.mark.parametrize(
    "overrides",
    [
        {"gpu_count": 0},
        {"gpus_per_node": 3, "gpu_count": 9},
        {"gpus_per_node": 16},
        {"gpu_count": 12, "gpus_per_node": 8},
        {"price_per_gpu_hour": Decimal("0")},
        {"allocated_gpus": 17},
    ],
    ids=["no-gpus", "node-of-3", "node-of-16", "partial-node", "free", "over-allocated"],
)
def test_listing_constraints_refuse_bad_rows(reference, provider, now, overrides):
    with pytest.raises(IntegrityError), transaction.atomic():
        listing_row(provider, now, **overrides).save()


def test_listing_window_must_be_ordered(reference, provider, now):
    with pytest.raises(IntegrityError), transaction.atomic():
        listing_row(provider, now, available_until=now).save()


def test_a_good_listing_row_is_accepted(reference, provider, now):
    listing_row(provider, now).save()
    assert Listing.objects.count() == 1


def test_allocation_above_count_is_refused_by_an_f_update(make_listing):
    listing = make_listing(gpu_count=8)
    from django.db.models import F

    with pytest.raises(IntegrityError), transaction.atomic():
        Listing.objects.filter(pk=listing.pk).update(allocated_gpus=F("allocated_gpus") + 9)


def request_row(buyer, now, **overrides):
    fields = {
        "buyer": buyer,
        "gpu_model": GpuModel.objects.get(code="h20"),
        "gpus_per_replica": 2,
        "replicas": 2,
        "origin": Region.objects.get(code="shanghai"),
        "latency_class": "interactive",
        "max_price_per_gpu_hour": Decimal("9"),
        "duration_hours": 4,
        "start_by": now + timedelta(hours=1),
    }
    return BuyerRequest(**{**fields, **overrides})


@pytest.mark.parametrize(
    "overrides",
    [
        {"gpus_per_replica": 3},
        {"replicas": 0},
        {"max_price_per_gpu_hour": Decimal("0")},
        {"duration_hours": 0},
        {"matched_replicas": 3},
        {"latency_class": "warp-speed"},
        {"max_rtt_ms": Decimal("0")},
        {"min_reliability": Decimal("1.0001")},
        {"min_reliability": Decimal("-0.0001")},
    ],
    ids=[
        "replica-of-3",
        "no-replicas",
        "free",
        "no-duration",
        "over-matched",
        "bad-class",
        "zero-rtt",
        "reliability-above-1",
        "reliability-below-0",
    ],
)
def test_request_constraints_refuse_bad_rows(reference, buyer, now, overrides):
    with pytest.raises(IntegrityError), transaction.atomic():
        request_row(buyer, now, **overrides).save()


def test_match_gpus_must_equal_replicas_times_size(make_listing, make_request, now):
    listing, request = make_listing(), make_request()
    match = Match(
        request=request,
        listing=listing,
        replicas=2,
        gpus_per_replica=2,
        gpus=3,
        nodes=[0, 0],
        price_per_gpu_hour=Decimal("6"),
        energy_cost_per_gpu_hour=Decimal("0.2"),
        cost_per_gpu_hour=Decimal("6"),
        rtt_ms=Decimal("35.1"),
        latency_class="standard",
        starts_at=now,
        ends_at=now + timedelta(hours=1),
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        match.save()
    match.gpus, match.subsidy_per_gpu_hour = 4, Decimal("7")
    with pytest.raises(IntegrityError), transaction.atomic():
        match.save()


def test_a_settlement_must_add_up_on_both_sides(make_listing, make_request, now):
    from marketplace.models import Settlement
    from tests.services_helpers import reserve

    listing, request = make_listing(), make_request()
    match = reserve(listing, request, now).matches[0]
    line = {
        "match": match,
        "buyer": request.buyer,
        "provider": listing.provider,
        "settled_at": now,
        "gpu_hours": Decimal("3"),
        "price_per_gpu_hour": Decimal("6"),
        "gross": Decimal("18.00"),
        "subsidy": Decimal("5.40"),
        "buyer_pays": Decimal("12.60"),
        "platform_fee": Decimal("0.90"),
        "provider_earns": Decimal("17.10"),
    }
    for broken in ({"buyer_pays": Decimal("12.61")}, {"provider_earns": Decimal("17.00")}):
        with pytest.raises(IntegrityError), transaction.atomic():
            Settlement.objects.create(**{**line, **broken})
    Settlement.objects.create(**line)
    with pytest.raises(IntegrityError), transaction.atomic():
        Settlement.objects.create(**line)  # one settlement per match: nothing is billed twice
