"""Listings and requests at every edge of their domains (``marketplace.bounds``) go through the
services, and every round afterwards succeeds and leaves nothing out; one step past an edge is a
400 naming the field, through the API, that writes nothing."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace import bounds, services
from marketplace.market_time import market_now
from marketplace.models import NODE_SIZES, BuyerRequest, GpuModel, Listing, MatchingRun, Region
from marketplace.services.rounds import round_run
from tests.conftest import scale
from tests.services_helpers import request_terms as api_request_terms

EDGE = timedelta(minutes=1)  # inside the window by a minute: the service reads the clock again

listing_terms = st.fixed_dictionaries(
    {
        "gpus_per_node": st.sampled_from(NODE_SIZES),
        "nodes": st.sampled_from([1, 2, bounds.GPU_COUNT.maximum // 8]),
        "price_per_gpu_hour": st.sampled_from([Decimal("0.0001"), Decimal("5.80"), bounds.PRICE.maximum]),
        "until": st.sampled_from([EDGE, timedelta(days=30), bounds.LISTING_TIMES.after - EDGE]),
        "region": st.sampled_from(["ningxia-zhongwei", "shanghai", "guizhou-guian"]),
    }
)
request_terms = st.fixed_dictionaries(
    {
        "gpus_per_replica": st.sampled_from(NODE_SIZES),
        "replicas": st.sampled_from([1, 2, "most"]),
        "max_price_per_gpu_hour": st.sampled_from([Decimal("0.0001"), Decimal("9.00"), bounds.PRICE.maximum]),
        "duration_hours": st.sampled_from([bounds.DURATION_HOURS.minimum, 24, bounds.DURATION_HOURS.maximum]),
        "start_in": st.sampled_from([EDGE, timedelta(hours=6), bounds.REQUEST_START.after - EDGE]),
        "bound": st.sampled_from(
            [{"latency_class": "batch"}, {"max_rtt_ms": Decimal("0.1")}, {"max_rtt_ms": bounds.MAX_RTT_MS.maximum}]
        ),
        "latency_weight": st.sampled_from([None, Decimal(0), bounds.LATENCY_WEIGHT.maximum]),
    }
)


@settings(max_examples=scale(15, 60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(listing=listing_terms, request=request_terms)
def test_rows_at_every_edge_are_accepted_and_every_round_succeeds(reference, provider, buyer, listing, request):
    now = market_now()
    h20 = GpuModel.objects.get(code="h20")
    services.listing_create(
        provider=provider,
        region=Region.objects.get(code=listing["region"]),
        gpu_model=h20,
        gpu_count=listing["nodes"] * listing["gpus_per_node"],
        gpus_per_node=listing["gpus_per_node"],
        price_per_gpu_hour=listing["price_per_gpu_hour"],
        available_from=now,
        available_until=now + listing["until"],
    )
    size = request["gpus_per_replica"]
    replicas = bounds.GPUS_PER_REQUEST.maximum // size if request["replicas"] == "most" else request["replicas"]
    services.request_submit(
        buyer=buyer,
        gpu_model=h20,
        gpus_per_replica=size,
        replicas=replicas,
        origin=Region.objects.get(code="shanghai"),
        max_price_per_gpu_hour=request["max_price_per_gpu_hour"],
        duration_hours=request["duration_hours"],
        start_by=now + request["start_in"],
        latency_weight=request["latency_weight"],
        **request["bound"],
    )
    run = MatchingRun.objects.get(pk=round_run(shard="h20", trigger="manual"))
    assert run.status == MatchingRun.Status.SUCCEEDED, run.error
    assert run.left_out == []
    BuyerRequest.objects.filter(status__in=BuyerRequest.OPEN_STATUSES).update(status="cancelled")


LISTING = {
    "region": "ningxia-zhongwei",
    "gpu_model": "h20",
    "gpu_count": 8,
    "gpus_per_node": 8,
    "price_per_gpu_hour": "5.80",
}
REQUEST = api_request_terms()


def _in(days: float) -> str:
    return (market_now() + timedelta(days=days)).isoformat()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("listings", {**LISTING, "gpu_count": bounds.GPU_COUNT.maximum + 8}, "gpu_count"),
        ("listings", {**LISTING, "price_per_gpu_hour": "1000.0001"}, "price_per_gpu_hour"),
        ("listings", {**LISTING, "price_per_gpu_hour": "1e2"}, "price_per_gpu_hour"),
        ("listings", {**LISTING, "price_per_gpu_hour": "٥"}, "price_per_gpu_hour"),
        ("listings", {**LISTING, "available_until": "2026-12-31T09:00:00"}, "available_until"),
        ("listings", {**LISTING, "available_from": "0001-01-01T00:00:00Z"}, "available_from"),
        ("listings", {**LISTING, "available_from": "9999-12-31T00:00:00Z"}, "available_from"),
        ("listings", {**LISTING, "available_until": "placeholder-past"}, "available_until"),
        ("listings", {**LISTING, "available_until": "placeholder-far"}, "available_until"),
        ("requests", {**REQUEST, "replicas": bounds.GPUS_PER_REQUEST.maximum + 1}, "replicas"),
        ("requests", {**REQUEST, "max_price_per_gpu_hour": "1000.01"}, "max_price_per_gpu_hour"),
        ("requests", {**REQUEST, "duration_hours": bounds.DURATION_HOURS.maximum + 1}, "duration_hours"),
        ("requests", {**REQUEST, "start_by": "placeholder-far"}, "start_by"),
        ("requests", {**REQUEST, "start_by": "2027-01-01T09:00"}, "start_by"),
        ("requests", {**REQUEST, "latency_class": None, "max_rtt_ms": "1000.1"}, "max_rtt_ms"),
        ("requests", {**REQUEST, "latency_weight": "10.0001"}, "latency_weight"),
        ("quotes", {**REQUEST, "start_by": "9999-12-31T00:00:00Z", "duration_hours": 8784}, "start_by"),
    ],
)
def test_one_step_past_an_edge_is_a_400_naming_the_field(clients, path, body, field):
    replace = {"placeholder-past": _in(-1), "placeholder-far": _in(bounds.LISTING_TIMES.after.days + 1)}
    body = {key: replace.get(value, value) for key, value in body.items() if value is not None}
    before = (Listing.objects.count(), BuyerRequest.objects.count())
    who = "provider" if path == "listings" else "buyer"
    response = clients[who].post(f"/api/v1/{path}/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert (Listing.objects.count(), BuyerRequest.objects.count()) == before


PROGRAM = {"name": "Chengdu compute voucher", "sponsor": "Chengdu", "percent": "30", "budget": "50000.00"}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"min_spend": "-5"}, "min_spend"),
        ({"max_spend": "-0.01"}, "max_spend"),
        ({"cap_per_buyer": "-1"}, "cap_per_buyer"),
        ({"budget": "10000000000.0001"}, "budget"),
        ({"valid_until": "placeholder-decade"}, "valid_until"),
        ({"valid_from": "1999-12-31T00:00:00Z"}, "valid_from"),
    ],
)
def test_programme_terms_past_their_edges_are_400s(clients, changes, field):
    decade = _in(bounds.PROGRAMME_TIMES.after.days + 1)
    body = {"valid_until": _in(30), **PROGRAM, **changes}
    body = {key: decade if value == "placeholder-decade" else value for key, value in body.items()}
    response = clients["staff"].post("/api/v1/voucher-programs/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    created = clients["staff"].post("/api/v1/voucher-programs/", {**PROGRAM, "valid_until": _in(30)}, format="json")
    assert created.status_code == 201, created.content
    if field in ("cap_per_buyer", "budget", "valid_until"):
        url = f"/api/v1/voucher-programs/{created.json()['id']}/"
        patched = clients["staff"].patch(url, {field: body[field]}, format="json")
        assert patched.status_code == 400, patched.content
        assert field in patched.json()
